// threading.h: fastdl's own thread count, passed to every OpenMP region as num_threads(...).
//
// OpenMP's omp_set_num_threads only changes the calling thread's setting; since kernels run
// with the GIL released and may be called from any Python thread, fastdl keeps one process-wide
// value instead. Default: OMP_NUM_THREADS if set, else the number of processors available.
#pragma once

namespace fastdl {

int get_num_threads();
void set_num_threads(int n);  // n >= 1, else ValueError

}  // namespace fastdl
