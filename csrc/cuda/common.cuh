// common.cuh: what every CUDA file of fastdl shares: the throwing error check.
//
// CUDA_CHECK(expr) evaluates a CUDA runtime call and, unless it returned cudaSuccess, throws
// fastdl::RuntimeError naming the error, the call and its file:line. The bindings turn that into
// a Python RuntimeError, so a failed launch or a missing driver never kills the interpreter
// (llm.c's cudaCheck, but throwing instead of exiting). Host code only; safe to include from
// plain C++ translation units (the bindings) as well as from .cu files.
#pragma once

#include <cuda_runtime_api.h>

#include "common/check.h"

#define CUDA_CHECK(expr)                                                                    \
  do {                                                                                      \
    const cudaError_t fastdl_cuda_err_ = (expr);                                            \
    if (fastdl_cuda_err_ != cudaSuccess)                                                    \
      throw fastdl::RuntimeError(fastdl::detail::concat(                                    \
          "CUDA error ", cudaGetErrorName(fastdl_cuda_err_), " (",                          \
          cudaGetErrorString(fastdl_cuda_err_), ") in ", #expr, " at ", __FILE__, ":",     \
          __LINE__));                                                                       \
  } while (0)

// After a kernel launch: a bad configuration or an earlier asynchronous fault surfaces here.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())
