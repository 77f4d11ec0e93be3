"""test_fuzz_triage.py — the rules scripts/fuzz_triage.py uses to decide
whether a fuzzing finding is culeace's (fails CI) or libhdf5's (listed), on
sanitizer reports shaped like the ones the fuzzers produce."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location(
    "fuzz_triage", ROOT / "scripts" / "fuzz_triage.py")
ft = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ft)

R = "/repo/"
HDF5 = "/lib/x86_64-linux-gnu/libhdf5_serial.so.103"


def report(*frames, extra=""):
    lines = ["==1==ERROR: AddressSanitizer: SEGV on unknown address"]
    lines += [f"    #{i} 0x7f00{i:08x} {f}" for i, f in enumerate(frames)]
    return "\n".join(lines) + "\n" + extra


def test_a_crash_inside_libhdf5_is_libhdf5s():
    r = report("in __memcpy_avx512_unaligned_erms string/../memmove.S:372",
               "in __interceptor_memcpy (/repo/build-fuzz/fuzz_x+0x77217)",
               f" ({HDF5}+0x190f18)",
               f"in H5Aexists ({HDF5}+0x5c350)",
               f"in culeace__h5_get_i64 {R}src/io/h5attr.c:44:7",
               f"in LLVMFuzzerTestOneInput {R}tests/fuzz/fuzz_x.c:14:7")
    cls, frame = ft.triage(r, R)
    assert cls == "libhdf5" and HDF5 in frame[1]


def test_an_interceptor_frame_is_passed_over():
    r = report("in strdup (/repo/build-fuzz/fuzz_x+0xca615)",
               f"in H5MM_strdup ({HDF5}+0x18431d)",
               f"in H5Aexists ({HDF5}+0x5c350)",
               f"in culeace__h5_get_i64 {R}src/io/h5attr.c:44:7")
    assert ft.triage(r, R) == ("libhdf5", ("H5MM_strdup", f"{HDF5}+0x18431d"))
    r = report("in strlen (/repo/build-fuzz/fuzz_x+0xca615)",
               f"in culeace__h5_shape_str {R}src/io/h5util.c:20:3")
    assert ft.triage(r, R)[0] == "culeace"


def test_a_crash_in_culeace_code_is_culeaces():
    r = report(f"in culeace__act_read {R}src/io/activations.c:780:10",
               f"in LLVMFuzzerTestOneInput {R}tests/fuzz/fuzz_x.c:20:7")
    assert ft.triage(r, R)[0] == "culeace"


def test_an_overflow_in_libhdf5_of_a_block_culeace_allocated_is_culeaces():
    r = report("in __interceptor_memcpy (/repo/build-fuzz/fuzz_x+0x77217)",
               f"in H5D__read ({HDF5}+0xc7a90)",
               f"in xfer {R}src/io/activations.c:764:18",
               extra="0x60 is located 0 bytes after 64-byte region\n"
                     "allocated by thread T0 here:\n"
                     "    #0 0x55 in malloc (/repo/build-fuzz/fuzz_x+0xdfd6d)\n"
                     f"    #1 0x7f in culeace__act_read {R}src/io/activations.c:770:3\n")
    cls, frame = ft.triage(r, R)
    assert cls == "culeace" and frame[0] == "culeace__act_read"


def test_an_overflow_of_libhdf5s_own_block_stays_libhdf5s():
    r = report(f"in H5F__accum_read ({HDF5}+0xf54de)",
               extra="allocated by thread T0 here:\n"
                     "    #0 0x55 in malloc (/repo/build-fuzz/fuzz_x+0xdfd6d)\n"
                     f"    #1 0x7f in H5FL_blk_malloc ({HDF5}+0x1234)\n")
    assert ft.triage(r, R)[0] == "libhdf5"


def test_an_out_of_memory_inside_libhdf5_and_in_culeace():
    fuzzer = ["in __sanitizer_print_stack_trace (/repo/build-fuzz/fuzz_x+0xe9df1)",
              "in fuzzer::PrintStackTrace() (/repo/build-fuzz/fuzz_x+0x5c748)",
              "in __asan::asan_malloc(unsigned long) (/repo/build-fuzz/fuzz_x+0x5f2b3)",
              "in malloc (/repo/build-fuzz/fuzz_x+0xdfd6d)"]
    lib = report(*fuzzer, f" ({HDF5}+0xab736)", f"in H5Dread ({HDF5}+0xc7f74)",
                 f"in xfer {R}src/io/activations.c:764:18")
    assert ft.triage(lib, R)[0] == "libhdf5"
    ours = report(*fuzzer, f"in culeace__alloc {R}src/core/ctx.c:90:3")
    assert ft.triage(ours, R)[0] == "culeace"


def test_a_report_without_a_placeable_frame_counts_as_culeaces():
    assert ft.triage("==1==ERROR: libFuzzer: deadly signal\n", R)[0] == "culeace"
