// launch.h: what every _cuda binding does just before a launch: check that the arrays live on
// the current device and turn the `stream` int into a cudaStream_t. Host code.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <initializer_list>

#include "bindings/args.h"
#include "common/check.h"
#include "cuda/common.cuh"

namespace fastdl::bindings {

// Every non-empty view must be device (or managed) memory of the current device: a kernel
// reading host memory or another GPU's memory would fault and poison the CUDA context. Null
// entries (absent optional arrays) are skipped.
inline void check_on_current_device(std::initializer_list<const ArrayView*> arrays) {
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  for (const ArrayView* a : arrays) {
    if (a == nullptr || a->size == 0) continue;
    cudaPointerAttributes attr{};
    CUDA_CHECK(cudaPointerGetAttributes(&attr, a->ptr));
    FASTDL_CHECK(attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged,
                 ValueError, a->name, ": data pointer is not GPU memory");
    FASTDL_CHECK(attr.type == cudaMemoryTypeManaged || attr.device == device, ValueError,
                 a->name, ": lives on CUDA device ", attr.device, " but the current device is ",
                 device, " (use `with cupy.cuda.Device(", attr.device, "):`)");
  }
}

inline cudaStream_t as_stream(std::uintptr_t stream) {
  return reinterpret_cast<cudaStream_t>(stream);
}

}  // namespace fastdl::bindings
