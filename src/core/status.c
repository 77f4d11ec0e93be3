/* status.c — names and descriptions of status codes (from the one X-macro
 * table in culeace.h), version and build information. */
#include <string.h>

#include "culeace.h"

const char *culeace_status_name(culeace_status s) {
  switch (s) {
#define CULEACE_STATUS_NAME_(name, value, text)                               \
  case CULEACE_##name:                                                         \
    return "CULEACE_" #name;
    CULEACE_STATUS_MAP(CULEACE_STATUS_NAME_)
#undef CULEACE_STATUS_NAME_
  }
  return "CULEACE_UNKNOWN";
}

const char *culeace_strerror(culeace_status s) {
  switch (s) {
#define CULEACE_STATUS_TEXT_(name, value, text)                               \
  case CULEACE_##name:                                                         \
    return text;
    CULEACE_STATUS_MAP(CULEACE_STATUS_TEXT_)
#undef CULEACE_STATUS_TEXT_
  }
  return "unknown status code";
}

const char *culeace_version(void) { return CULEACE_VERSION_STRING; }

const char *culeace_backends_compiled(void) {
#ifdef CULEACE_HAVE_CUDA
  return "cpu cuda";
#else
  return "cpu";
#endif
}

size_t culeace_dtype_size(culeace_dtype t) {
  switch (t) {
  case CULEACE_F32: return 4;
  case CULEACE_F16: return 2;
  case CULEACE_BF16: return 2;
  case CULEACE_F64: return 8;
  }
  return 0;
}

const char *culeace_dtype_name(culeace_dtype t) {
  switch (t) {
  case CULEACE_F32: return "float32";
  case CULEACE_F16: return "float16";
  case CULEACE_BF16: return "bfloat16";
  case CULEACE_F64: return "float64";
  }
  return "unknown";
}

/* ---- method names ---------------------------------------------------------- */
static const char *const method_names[] = {"leace", "orth", "inlp", "rlace",
                                           "oracle", "quadratic"};

const char *culeace_method_name(culeace_method m) {
  if ((int)m < 0 || (size_t)m >= sizeof method_names / sizeof *method_names)
    return NULL;
  return method_names[m];
}

int culeace_method_parse(const char *s, culeace_method *out) {
  for (size_t i = 0; s && i < sizeof method_names / sizeof *method_names; i++)
    if (!strcmp(s, method_names[i])) {
      *out = (culeace_method)i;
      return 0;
    }
  return -1;
}
