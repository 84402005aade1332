// cpu.h: which instruction set the CPU kernels use.
//
// Detected once (thread-safe, cached) from CPUID; FASTDL_CPU_ISA=generic|avx2|avx512 caps the
// choice, FASTDL_CPU_ISA_DEBUG=1 prints it to stderr. Kernels look up their function table with
// cpu_isa(); tests may ask for a lower ISA explicitly through isa_from_name().
#pragma once

#include <string>

namespace fastdl {

enum class Isa : int { generic = 0, avx2 = 1, avx512 = 2 };

Isa cpu_isa();                       // the ISA in use: min(supported, FASTDL_CPU_ISA)
Isa cpu_isa_supported();             // the best the processor (and OS) can run
const char* isa_name(Isa isa);
Isa isa_from_name(const std::string& name);  // throws ValueError for an unknown name

// Every family's kernel table is chosen here: the table for `isa`, capped at what the processor
// supports, so no caller can be handed kernels the CPU cannot run whatever it asked for.
template <class Table>
const Table& pick_isa(Isa isa, const Table& generic, const Table& avx2, const Table& avx512) {
  const int want = static_cast<int>(isa), best = static_cast<int>(cpu_isa_supported());
  const int use = want < best ? want : best;
  return use == int(Isa::avx512) ? avx512 : use == int(Isa::avx2) ? avx2 : generic;
}

}  // namespace fastdl
