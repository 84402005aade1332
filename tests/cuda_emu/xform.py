# xform.py IN OUT: a .cu/.cuh file as emulator C++ (see run.sh): every
# kernel<<<g, b, s, st>>>(args); becomes emu_launch(emu_dim(g), emu_dim(b), [&] { kernel(args); });
import re
import sys

src = open(sys.argv[1]).read()
pat = re.compile(r'([A-Za-z_][\w:]*(?:<[^<>;]*?>)?)\s*<<<(.*?)>>>\s*\((.*?)\);', re.S)
def split_top(s):
    parts, depth, cur = [], 0, ''
    for ch in s:
        if ch in '(<': depth += 1
        if ch in ')>': depth -= 1
        if ch == ',' and depth == 0:
            parts.append(cur); cur = ''
        else:
            cur += ch
    return [p.strip() for p in parts + [cur]]
def rep(m):
    parts = split_top(m.group(2))
    return f'emu_launch(emu_dim({parts[0]}), emu_dim({parts[1]}), [&] {{ {m.group(1)}({m.group(3)}); }});'
out = pat.sub(rep, src)
if sys.argv[1].endswith('.cu'):
    out = out.replace('#include "cuda/common.cuh"', '#include "emu.h"\n#include "cuda/common.cuh"', 1)
open(sys.argv[2], 'w').write(out)
