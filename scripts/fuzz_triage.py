#!/usr/bin/env python3
"""fuzz_triage.py — sorts a fuzzing run's findings into culeace's and
libhdf5's by where each one happens.

    python3 scripts/fuzz_triage.py TARGET ARTIFACT...

Runs TARGET (a libFuzzer binary) once on each artifact (crash-*, leak-*,
oom-*, timeout-*, as libFuzzer saved them), reads the sanitizer's or
libFuzzer's report, and takes its first stack frame that is not the
sanitizer, libFuzzer, the allocator or libc (for a leak: the first frame
of the allocation stack past malloc). That frame's place decides, except
that a bad access inside libhdf5 to a heap block culeace allocated or
freed counts as culeace's:

  culeace   culeace's own code (the library, the harness): a bug to fix;
  libhdf5   inside libhdf5 (docs/SECURITY.md: crashes culeace cannot guard
            from the outside, recorded, not failures);
  gone      the artifact no longer fails (a timeout under load, say).

Prints one line per artifact and exits 1 when any is culeace's.
Environment as scripts/fuzz.sh sets it (ASAN_OPTIONS, LSAN_OPTIONS, ...).
"""

import os
import re
import subprocess
import sys

FRAME = re.compile(r"^\s*#(\d+) 0x[0-9a-f]+\s+(?:in (\S+) )?\(?([^)\s]*)")
SKIP_FUNC = re.compile(
    r"^(__sanitizer|__asan|__lsan|__ubsan|__interceptor|___interceptor|"
    r"__msan|fuzzer::|LLVMFuzzerRunDriver|malloc|calloc|realloc|free|"
    r"posix_memalign|aligned_alloc|operator|__libc|__GI_|__memcpy|__memmove|"
    r"__memset|__strlen|__wrap_|_start|main$|"
    # the sanitizer's interceptors of libc string and memory functions
    r"(str|strn|mem|w?cs)(dup|len|cpy|cmp|cat|chr|rchr|move|set|casecmp)$|"
    r"v?s?n?printf$)")
SKIP_PLACE = re.compile(r"(libc\.so|ld-linux|libclang_rt|compiler-rt|"
                        r"libstdc\+\+|libgcc_s)")


def first_frame(report):
    """(function, place) of the report's first frame that is culeace's or a
    library's own, or None."""
    for line in report.splitlines():
        m = FRAME.match(line)
        if not m:
            continue
        func, place = m.group(2) or "", m.group(3) or ""
        if SKIP_FUNC.match(func) or SKIP_PLACE.search(place):
            continue
        return func, place
    return None


def classify(frame, root):
    if frame is None:
        return "unknown"
    func, place = frame
    if "libhdf5" in place or func.startswith(("H5", "H5_")):
        return "libhdf5"
    if place.startswith(root) or os.path.basename(place).startswith("fuzz_"):
        return "culeace"
    return "other"


def triage(report, root):
    """(class, frame) of a failing run's report: class as in the module's
    docstring ("culeace" or "libhdf5"; a finding that cannot be placed
    counts as culeace's, to be looked at)."""
    frame = first_frame(report)
    cls = classify(frame, root)
    # a bad access inside libhdf5 to memory culeace allocated or freed (a
    # buffer too small for what culeace asked libhdf5 to read, say) is
    # culeace's
    for marker in ("allocated by thread", "freed by thread"):
        at = report.find(marker)
        if cls == "libhdf5" and at >= 0:
            owner = first_frame(report[at:])
            if classify(owner, root) == "culeace":
                cls, frame = "culeace", owner
    if cls in ("unknown", "other"):
        cls = "culeace"
    return cls, frame


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    target, artifacts = sys.argv[1], sys.argv[2:]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + "/"
    bad = 0
    for art in artifacts:
        p = subprocess.run([target, "-runs=1", "-timeout=30",
                            "-rss_limit_mb=2048", art],
                           capture_output=True, text=True, timeout=300)
        report = p.stdout + p.stderr
        m = re.search(r"-(crash|leak|oom|timeout|slow-unit)-", art)
        kind = m.group(1) if m else "input"
        if p.returncode == 0:
            cls, frame = "gone", None
        else:
            cls, frame = triage(report, root)
        where = f"{frame[0] or '?'} ({frame[1]})" if frame else "-"
        print(f"{cls:8} {kind:8} {os.path.basename(art)}  {where}")
        if cls == "culeace":
            bad = 1
            summary = [x for x in report.splitlines()
                       if "ERROR" in x or "SUMMARY" in x or "runtime error" in x]
            for x in summary[:4]:
                print(f"         {x}")
    return bad


if __name__ == "__main__":
    sys.exit(main())
