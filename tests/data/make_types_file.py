"""Write ``types.root``: one small TTree with every branch type a real NanoAOD can hold.

Run with a Python that has PyROOT (``pip install ROOT`` in a separate virtualenv, not in the
project's), from this directory: ``python make_types_file.py``. uproot cannot write
``std::vector``, ``std::string``, ``Double32_t`` or ``Float16_t`` branches, so the file is
written by ROOT itself and kept in the repository (a few kB). Entry ``i`` (0..5) holds values
derived from ``i`` as written below; ``tests/test_root_types.py`` asserts them.
"""

from __future__ import annotations

import numpy as np
import ROOT

ENTRIES = 6


def main() -> None:
    file = ROOT.TFile("types.root", "RECREATE")
    tree = ROOT.TTree("Events", "every NanoAOD branch type")
    scalars = {
        "b": (np.bool_, "O"),
        "i8": (np.int8, "B"),
        "u8": (np.uint8, "b"),
        "i16": (np.int16, "S"),
        "u16": (np.uint16, "s"),
        "i32": (np.int32, "I"),
        "u32": (np.uint32, "i"),
        "i64": (np.int64, "L"),
        "u64": (np.uint64, "l"),
        "f32": (np.float32, "F"),
        "f64": (np.float64, "D"),
    }
    buffers = {}
    for name, (dtype, letter) in scalars.items():
        buffers[name] = np.zeros(1, dtype=dtype)
        tree.Branch(name, buffers[name], f"{name}/{letter}")
    buffers["d32"] = np.zeros(1, dtype=np.float64)
    tree.Branch("d32", buffers["d32"], "d32/d")
    buffers["d32r"] = np.zeros(1, dtype=np.float64)
    tree.Branch("d32r", buffers["d32r"], "d32r/d[0,100,16]")
    buffers["f16"] = np.zeros(1, dtype=np.float32)
    tree.Branch("f16", buffers["f16"], "f16/f")
    buffers["n"] = np.zeros(1, dtype=np.int32)
    tree.Branch("n", buffers["n"], "n/I")
    jagged = {
        "jf": (np.float32, "F"),
        "jd": (np.float64, "D"),
        "jb": (np.bool_, "O"),
        "ju8": (np.uint8, "b"),
        "ji64": (np.int64, "L"),
        "ju16": (np.uint16, "s"),
    }
    for name, (dtype, letter) in jagged.items():
        buffers[name] = np.zeros(8, dtype=dtype)
        tree.Branch(name, buffers[name], f"{name}[n]/{letter}")
    buffers["fix3"] = np.zeros(3, dtype=np.float32)
    tree.Branch("fix3", buffers["fix3"], "fix3[3]/F")
    buffers["mat"] = np.zeros(6, dtype=np.int32)
    tree.Branch("mat", buffers["mat"], "mat[2][3]/I")
    name_buffer = np.zeros(32, dtype=np.uint8)
    tree.Branch("label", name_buffer, "label/C")
    vf = ROOT.std.vector("float")()
    vi = ROOT.std.vector("int")()
    vd = ROOT.std.vector("double")()
    vvf = ROOT.std.vector(ROOT.std.vector("float"))()
    text = ROOT.std.string()
    tree.Branch("vf", vf)
    tree.Branch("vi", vi)
    tree.Branch("vd", vd)
    tree.Branch("vvf", vvf)
    tree.Branch("text", text)

    for i in range(ENTRIES):
        buffers["b"][0] = i % 2 == 1
        buffers["i8"][0] = -i
        buffers["u8"][0] = 250 + i
        buffers["i16"][0] = -1000 * i
        buffers["u16"][0] = 65530 + i
        buffers["i32"][0] = -100000 * i
        buffers["u32"][0] = 4294967290 + i
        buffers["i64"][0] = -(10**12) * i
        buffers["u64"][0] = 10**15 * i
        buffers["f32"][0] = 0.5 * i
        buffers["f64"][0] = 0.25 * i
        buffers["d32"][0] = 1.1 * i
        buffers["d32r"][0] = 12.5 * i
        buffers["f16"][0] = 0.75 * i
        count = i % 4
        buffers["n"][0] = count
        for k in range(count):
            buffers["jf"][k] = 10 * i + k + 0.5
            buffers["jd"][k] = 100 * i + k + 0.25
            buffers["jb"][k] = (i + k) % 2 == 0
            buffers["ju8"][k] = 200 + k
            buffers["ji64"][k] = 2**40 + i * 10 + k
            buffers["ju16"][k] = 60000 + k
        buffers["fix3"][:] = [i, i + 0.5, -i]
        buffers["mat"][:] = np.arange(6) + 10 * i
        encoded = f"entry{i}".encode()
        name_buffer[:] = 0
        name_buffer[: len(encoded)] = np.frombuffer(encoded, dtype=np.uint8)
        vf.clear()
        vi.clear()
        vd.clear()
        vvf.clear()
        for k in range(i % 3):
            vf.push_back(i + 0.125 * k)
            vi.push_back(-i * 10 - k)
            vd.push_back(i * 1000.0 + k)
        for k in range(i % 3):
            inner = ROOT.std.vector("float")()
            for m in range(k + 1):
                inner.push_back(i + m * 0.5)
            vvf.push_back(inner)
        text.assign("x" * i)
        tree.Fill()
    tree.Write()
    file.Close()


if __name__ == "__main__":
    main()
