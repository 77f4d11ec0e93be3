/* devices.c — how many CUDA devices this process sees (0 without the CUDA
 * backend or a driver), so that a launcher's processes can each pick one. */
#include "core/cuda_module.h"
#include "culeace.h"

int culeace_cuda_device_count(void) {
  return culeace__cuda_module_device_count();
}
