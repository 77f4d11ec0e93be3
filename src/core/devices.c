/* devices.c — how many CUDA devices this process sees (0 without the CUDA
 * backend or a driver), so that a launcher's processes can each pick one. */
#include "culeace.h"

#ifdef CULEACE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

int culeace_cuda_device_count(void) {
#ifdef CULEACE_HAVE_CUDA
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError(); /* no driver or GPU: clear the sticky error */
    return 0;
  }
  return count;
#else
  return 0;
#endif
}
