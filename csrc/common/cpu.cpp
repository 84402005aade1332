#include "common/cpu.h"

#include <cstdio>
#include <cstdlib>

#include "common/check.h"

namespace fastdl {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "generic";
  }
}

Isa isa_from_name(const std::string& name) {
  if (name == "generic") return Isa::generic;
  if (name == "avx2") return Isa::avx2;
  if (name == "avx512") return Isa::avx512;
  throw ValueError("unknown CPU ISA '" + name + "': expected one of generic, avx2, avx512");
}

Isa cpu_isa_supported() {
  static const Isa isa = [] {
    __builtin_cpu_init();
    // __builtin_cpu_supports consults XGETBV too, so OS support for the wide registers is
    // included. Our AVX-512 code uses F, BW, DQ and VL; the AVX2 code also needs FMA.
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("fma"))
      return Isa::avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
    return Isa::generic;
  }();
  return isa;
}

Isa cpu_isa() {
  // A function-local static is initialised exactly once even with concurrent callers.
  static const Isa isa = [] {
    Isa best = cpu_isa_supported();
    Isa chosen = best;
    if (const char* cap = std::getenv("FASTDL_CPU_ISA"); cap && *cap) {
      Isa want = isa_from_name(cap);
      if (static_cast<int>(want) < static_cast<int>(best)) chosen = want;
    }
    if (const char* dbg = std::getenv("FASTDL_CPU_ISA_DEBUG"); dbg && *dbg && *dbg != '0')
      std::fprintf(stderr, "fastdl: CPU ISA %s (supported: %s)\n", isa_name(chosen),
                   isa_name(best));
    return chosen;
  }();
  return isa;
}

}  // namespace fastdl
