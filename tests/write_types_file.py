"""Write ``types.root`` with ROOT itself: a TTree with a branch of every type the source reads.

uproot cannot write ``std::vector<T>``, ``std::string``, ``Double32_t``, ``Float16_t`` or split
objects, and no data file may be committed, so ``tests/test_root_types.py`` runs this script
with PyROOT (``pip install ROOT``) in a subprocess, never importing ROOT into the pytest
process (ROOT installs signal handlers beside the JVM's). The tree is written by a C++ function
declared with ``gInterpreter``: typed branches, ``Double32_t``/``Float16_t`` leaves with and
without a ``[min,max,bits]`` range, and a split class whose truncated members carry the range
as a ``//[0,100,16]`` comment. The values are hand-chosen, edge values included; the test
asserts them.

Besides the file, the script writes ``types_root_values.json``: the truncated floating-point
branches as ROOT itself reads them back, so that those are checked against ROOT and not only
against uproot's decoding.

Usage: ``python write_types_file.py OUTPUT_DIRECTORY``. Exit status 3 (with the reason on
stderr) means PyROOT is not importable.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

FILE_NAME = "types.root"
VALUES_NAME = "types_root_values.json"
NO_ROOT = 3
TRUNCATED = (
    "d32",
    "d32r",
    "f16",
    "f16r",
    "hit/energy",
    "hit/raw",
    "hit/time",
    "hit/width",
)
"""The Double32_t and Float16_t branches (the ROOT read-back in the JSON file)."""

WRITER = r"""
#include <TFile.h>
#include <TTree.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

struct SparkhepHit {
  Int_t id;
  Double32_t energy;                //[0,100,16]
  Double32_t raw;
  Float16_t time;                   //[0,10,12]
  Float16_t width;
};

struct SparkhepWave {
  std::vector<Double32_t> samples;
};

namespace sparkhep_types {

template <typename T>
using PerEntry = std::vector<std::vector<T>>;

constexpr std::size_t kEntries = 6;
constexpr std::size_t kMaxCount = 4;

template <typename T>
void fill_counted(T* buffer, const PerEntry<T>& values, std::size_t entry, Int_t count,
                  const char* name) {
  if (values.size() != kEntries || values[entry].size() != static_cast<std::size_t>(count)) {
    throw std::runtime_error(std::string("values of ") + name + " disagree with the counter n");
  }
  for (Int_t k = 0; k < count; ++k) buffer[k] = values[entry][k];
}

void write(const char* path) {
  const auto i32_min = std::numeric_limits<Int_t>::min();
  const auto i32_max = std::numeric_limits<Int_t>::max();
  const auto i64_min = std::numeric_limits<Long64_t>::min();
  const auto i64_max = std::numeric_limits<Long64_t>::max();
  const ULong64_t two_63 = 9223372036854775808ULL;
  const ULong64_t u64_max = std::numeric_limits<ULong64_t>::max();
  const Float_t nan_f = std::numeric_limits<Float_t>::quiet_NaN();
  const Double_t nan_d = std::numeric_limits<Double_t>::quiet_NaN();

  const std::vector<Bool_t> flag = {false, true, true, false, true, false};
  const std::vector<Char_t> i8 = {0, -128, 127, -1, 1, 42};
  const std::vector<UChar_t> u8 = {0, 255, 1, 128, 254, 7};
  const std::vector<Short_t> i16 = {0, -32768, 32767, -1, 300, -300};
  const std::vector<UShort_t> u16 = {0, 65535, 1, 32768, 40000, 9};
  const std::vector<Int_t> i32 = {0, i32_min, i32_max, -1, 123456, -654321};
  const std::vector<UInt_t> u32 = {0, 4294967295U, 1, 2147483648U, 3000000000U, 11};
  const std::vector<Long64_t> i64 = {0, i64_min, i64_max, -1, 1099511627777LL,
                                     -1000000000000000LL};
  const std::vector<ULong64_t> u64 = {0, two_63 - 1, 1, 4611686018427387904ULL,
                                      12345678901234ULL, 13};
  const std::vector<ULong64_t> u64_big = {0, 1, two_63 - 1, two_63, u64_max, 6};
  const std::vector<Float_t> f32 = {0, -0.0F, 1.5F, FLT_MAX, FLT_TRUE_MIN, -INFINITY};
  const std::vector<Double_t> f64 = {0, -2.5, DBL_MAX, DBL_TRUE_MIN, INFINITY, nan_d};
  const std::vector<Double32_t> d32 = {0, 1.1, -2.2, 1e30, 3.3, 100.5};
  const std::vector<Double32_t> d32r = {0, 12.3, 50, 99.99, 100, 0.001};
  const std::vector<Float16_t> f16 = {0, 0.1F, -1.7F, 1000.25F, 3.14159F, 0.001F};
  const std::vector<Float16_t> f16r = {0, 1.7F, 5, 9.99F, 10, 2.5F};

  const std::vector<Int_t> n = {0, 1, 3, 2, 0, 4};
  const PerEntry<Float_t> jf32 = {{}, {1.5F}, {-0.5F, FLT_MAX, INFINITY}, {nan_f, 2}, {},
                                  {1, 2, 3, 4}};
  const PerEntry<Double_t> jf64 = {{}, {-1e300}, {0.25, DBL_TRUE_MIN, -0.0}, {1e-300, 3}, {},
                                   {5, 6, 7, 8}};
  const PerEntry<Bool_t> jb = {{}, {true}, {false, true, false}, {true, true}, {},
                               {false, false, true, false}};
  const PerEntry<Char_t> ji8 = {{}, {-128}, {127, 0, -1}, {5, -5}, {}, {1, 2, 3, 4}};
  const PerEntry<UChar_t> ju8 = {{}, {255}, {0, 128, 1}, {200, 201}, {}, {9, 8, 7, 6}};
  const PerEntry<Short_t> ji16 = {{}, {-32768}, {32767, 0, -1}, {1000, -1000}, {},
                                  {1, 2, 3, 4}};
  const PerEntry<UShort_t> ju16 = {{}, {65535}, {0, 32768, 1}, {60000, 60001}, {},
                                   {4, 3, 2, 1}};
  const PerEntry<Int_t> ji32 = {{}, {i32_min}, {i32_max, 0, -1}, {7, -7}, {}, {1, 2, 3, 4}};
  const PerEntry<UInt_t> ju32 = {{}, {4294967295U}, {0, 2147483648U, 1}, {3000000000U, 5}, {},
                                 {1, 2, 3, 4}};
  const PerEntry<Long64_t> ji64 = {{}, {i64_min}, {i64_max, 0, -1},
                                   {1099511627776LL, -1099511627776LL}, {}, {1, 2, 3, 4}};
  const PerEntry<ULong64_t> ju64 = {{}, {two_63 - 1}, {0, 1, 2}, {4611686018427387904ULL, 5},
                                    {}, {1, 2, 3, 4}};
  const PerEntry<ULong64_t> ju64_big = {{}, {1}, {2, two_63, 3}, {u64_max, 4}, {},
                                        {5, 6, 7, 8}};
  const PerEntry<Float_t> pos = {{}, {1, 2}, {3, 4, 5, 6, 7, 8}, {-1, -2, -3, -4}, {},
                                 {0, 0, 1, 1, 2, 2, 3, 3}};

  const PerEntry<Float_t> fix3 = {{0, 0.5F, -0.0F}, {1, FLT_MAX, -1}, {2, 2.5F, -2},
                                  {-INFINITY, 3.5F, nan_f}, {4, 4.5F, -4}, {5, 5.5F, -5}};
  const std::vector<std::string> label = {"x", "a", "entry two", "\u00b5\u2192\u03c4\u03c4",
                                          std::string(30, 'x'), "end"};
  const std::vector<std::string> text = {"", "hello", "two words",
                                         "\u00fcn\u00efc\u00f6d\u00e9 \u00b5",
                                         std::string(300, 's'), "end"};
  const PerEntry<Float_t> vf_values = {{1.5F, -2.25F}, {}, {INFINITY}, {nan_f, 0, FLT_MAX},
                                       {}, {-0.0F}};
  const PerEntry<Int_t> vi_values = {{}, {i32_min, i32_max}, {0}, {}, {1, 2, 3, 4, 5}, {-1}};
  const PerEntry<Double_t> vd_values = {{DBL_MAX}, {}, {-1e-300, 0.1}, {}, {nan_d},
                                        {1, 2, 3}};
  const PerEntry<bool> vb_values = {{true}, {}, {false, true}, {true, true, true}, {}, {false}};
  const PerEntry<std::string> vs_values = {{}, {""}, {"a", "bc"}, {"\u00b5"}, {},
                                           {std::string(300, 'v'), "z"}};
  const std::vector<PerEntry<Float_t>> vvf_values = {{}, {{}}, {{1.5F}, {}}, {{1, 2}, {3}}, {},
                                                     {{-1}, {-2}, {-3}}};
  const PerEntry<ULong64_t> vu64_values = {{}, {two_63 - 1}, {0, 1}, {}, {123},
                                           {4611686018427387904ULL}};
  const PerEntry<ULong64_t> vu64_big_values = {{}, {}, {1}, {}, {u64_max, 2}, {two_63}};
  const std::vector<Double32_t> hit_energy = {0, 33.3, 66.6, 99.9, 0.5, 100};
  const std::vector<Double32_t> hit_raw = {0, 1.1, -2.2, 3.3e20, 4.4, 5.5};
  const std::vector<Float16_t> hit_time = {0, 0.37F, 9.99F, 5, 10, 2.25F};
  const std::vector<Float16_t> hit_width = {0, 0.1F, 1.7F, -3.3F, 1e4F, 0.001F};
  const PerEntry<Double32_t> wave_samples = {{}, {1.5}, {999.9, 0}, {}, {500, 250, 125}, {0.1}};
  const std::vector<std::string> label_empty = {"", "a", "", "entry three", "", "end"};

  TFile file(path, "RECREATE");
  if (file.IsZombie()) throw std::runtime_error(std::string("cannot create ") + path);
  TTree tree("Events", "a branch of every type the root source reads");

  Bool_t b_flag;
  Char_t b_i8;
  UChar_t b_u8;
  Short_t b_i16;
  UShort_t b_u16;
  Int_t b_i32;
  UInt_t b_u32;
  Long64_t b_i64;
  ULong64_t b_u64, b_u64_big;
  Float_t b_f32;
  Double_t b_f64;
  Double32_t b_d32, b_d32r;
  Float16_t b_f16, b_f16r;
  tree.Branch("flag", &b_flag, "flag/O");
  tree.Branch("i8", &b_i8, "i8/B");
  tree.Branch("u8", &b_u8, "u8/b");
  tree.Branch("i16", &b_i16, "i16/S");
  tree.Branch("u16", &b_u16, "u16/s");
  tree.Branch("i32", &b_i32, "i32/I");
  tree.Branch("u32", &b_u32, "u32/i");
  tree.Branch("i64", &b_i64, "i64/L");
  tree.Branch("u64", &b_u64, "u64/l");
  tree.Branch("u64_big", &b_u64_big, "u64_big/l");
  tree.Branch("f32", &b_f32, "f32/F");
  tree.Branch("f64", &b_f64, "f64/D");
  tree.Branch("d32", &b_d32, "d32/d");
  tree.Branch("d32r", &b_d32r, "d32r/d[0,100,16]");
  tree.Branch("f16", &b_f16, "f16/f");
  tree.Branch("f16r", &b_f16r, "f16r/f[0,10,12]");

  Int_t b_n;
  Float_t b_jf32[kMaxCount];
  Double_t b_jf64[kMaxCount];
  Bool_t b_jb[kMaxCount];
  Char_t b_ji8[kMaxCount];
  UChar_t b_ju8[kMaxCount];
  Short_t b_ji16[kMaxCount];
  UShort_t b_ju16[kMaxCount];
  Int_t b_ji32[kMaxCount];
  UInt_t b_ju32[kMaxCount];
  Long64_t b_ji64[kMaxCount];
  ULong64_t b_ju64[kMaxCount], b_ju64_big[kMaxCount];
  Float_t b_pos[kMaxCount][2];
  tree.Branch("n", &b_n, "n/I");
  tree.Branch("jf32", b_jf32, "jf32[n]/F");
  tree.Branch("jf64", b_jf64, "jf64[n]/D");
  tree.Branch("jb", b_jb, "jb[n]/O");
  tree.Branch("ji8", b_ji8, "ji8[n]/B");
  tree.Branch("ju8", b_ju8, "ju8[n]/b");
  tree.Branch("ji16", b_ji16, "ji16[n]/S");
  tree.Branch("ju16", b_ju16, "ju16[n]/s");
  tree.Branch("ji32", b_ji32, "ji32[n]/I");
  tree.Branch("ju32", b_ju32, "ju32[n]/i");
  tree.Branch("ji64", b_ji64, "ji64[n]/L");
  tree.Branch("ju64", b_ju64, "ju64[n]/l");
  tree.Branch("ju64_big", b_ju64_big, "ju64_big[n]/l");
  tree.Branch("pos", b_pos, "pos[n][2]/F");

  Float_t b_fix3[3];
  Int_t b_mat[2][3];
  char b_label[64], b_label_empty[64];
  tree.Branch("fix3", b_fix3, "fix3[3]/F");
  tree.Branch("mat", b_mat, "mat[2][3]/I");
  tree.Branch("label", b_label, "label/C");
  tree.Branch("label_empty", b_label_empty, "label_empty/C");

  std::string b_text;
  std::vector<Float_t> b_vf;
  std::vector<Int_t> b_vi;
  std::vector<Double_t> b_vd;
  std::vector<bool> b_vb;
  std::vector<std::string> b_vs;
  std::vector<std::vector<Float_t>> b_vvf;
  std::vector<ULong64_t> b_vu64, b_vu64_big;
  SparkhepHit b_hit;
  SparkhepWave b_wave;
  tree.Branch("text", &b_text);
  tree.Branch("vf", &b_vf);
  tree.Branch("vi", &b_vi);
  tree.Branch("vd", &b_vd);
  tree.Branch("vb", &b_vb);
  tree.Branch("vs", &b_vs);
  tree.Branch("vvf", &b_vvf);
  tree.Branch("vu64", &b_vu64);
  tree.Branch("vu64_big", &b_vu64_big);
  tree.Branch("hit", &b_hit);
  tree.Branch("wave", &b_wave);

  for (std::size_t i = 0; i < kEntries; ++i) {
    b_flag = flag.at(i);
    b_i8 = i8.at(i);
    b_u8 = u8.at(i);
    b_i16 = i16.at(i);
    b_u16 = u16.at(i);
    b_i32 = i32.at(i);
    b_u32 = u32.at(i);
    b_i64 = i64.at(i);
    b_u64 = u64.at(i);
    b_u64_big = u64_big.at(i);
    b_f32 = f32.at(i);
    b_f64 = f64.at(i);
    b_d32 = d32.at(i);
    b_d32r = d32r.at(i);
    b_f16 = f16.at(i);
    b_f16r = f16r.at(i);

    b_n = n.at(i);
    fill_counted(b_jf32, jf32, i, b_n, "jf32");
    fill_counted(b_jf64, jf64, i, b_n, "jf64");
    fill_counted(b_jb, jb, i, b_n, "jb");
    fill_counted(b_ji8, ji8, i, b_n, "ji8");
    fill_counted(b_ju8, ju8, i, b_n, "ju8");
    fill_counted(b_ji16, ji16, i, b_n, "ji16");
    fill_counted(b_ju16, ju16, i, b_n, "ju16");
    fill_counted(b_ji32, ji32, i, b_n, "ji32");
    fill_counted(b_ju32, ju32, i, b_n, "ju32");
    fill_counted(b_ji64, ji64, i, b_n, "ji64");
    fill_counted(b_ju64, ju64, i, b_n, "ju64");
    fill_counted(b_ju64_big, ju64_big, i, b_n, "ju64_big");
    fill_counted(&b_pos[0][0], pos, i, 2 * b_n, "pos (two per item)");

    for (std::size_t k = 0; k < 3; ++k) b_fix3[k] = fix3.at(i).at(k);
    for (std::size_t r = 0; r < 2; ++r) {
      for (std::size_t c = 0; c < 3; ++c) b_mat[r][c] = static_cast<Int_t>(100 * i + 10 * r + c);
    }
    std::memset(b_label, 0, sizeof(b_label));
    std::strncpy(b_label, label.at(i).c_str(), sizeof(b_label) - 1);
    std::memset(b_label_empty, 0, sizeof(b_label_empty));
    std::strncpy(b_label_empty, label_empty.at(i).c_str(), sizeof(b_label_empty) - 1);

    b_text = text.at(i);
    b_vf = vf_values.at(i);
    b_vi = vi_values.at(i);
    b_vd = vd_values.at(i);
    b_vb = vb_values.at(i);
    b_vs = vs_values.at(i);
    b_vvf = vvf_values.at(i);
    b_vu64 = vu64_values.at(i);
    b_vu64_big = vu64_big_values.at(i);
    b_hit.id = static_cast<Int_t>(i) - 2;
    b_hit.energy = hit_energy.at(i);
    b_hit.raw = hit_raw.at(i);
    b_hit.time = hit_time.at(i);
    b_hit.width = hit_width.at(i);
    b_wave.samples = wave_samples.at(i);
    tree.Fill();
  }
  tree.Write();
  file.Close();
}

}  // namespace sparkhep_types
"""


def read_back(path: Path, root) -> dict[str, list[float]]:
    """The truncated floating-point branches, entry by entry, as ROOT reads them."""
    file = root.TFile.Open(str(path))
    tree = file.Get("Events")
    values: dict[str, list[float]] = {name: [] for name in TRUNCATED}
    for event in tree:
        for name in TRUNCATED:
            value = event
            for part in name.split("/"):
                value = getattr(value, part)
            values[name].append(float(value))
    file.Close()
    return values


def main(argv: list[str]) -> int:
    """Write the file and the read-back into the directory given as the only argument."""
    if len(argv) != 1:
        print(f"usage: python {Path(__file__).name} OUTPUT_DIRECTORY", file=sys.stderr)
        return 2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "This distribution of ROOT is in alpha stage"
            import ROOT
    except ImportError as err:
        print(f"PyROOT is not importable ({err}); pip install ROOT", file=sys.stderr)
        return NO_ROOT
    ROOT.gROOT.SetBatch(True)
    if not ROOT.gInterpreter.Declare(WRITER):
        print("ROOT could not compile the writer (see the messages above)", file=sys.stderr)
        return 1
    directory = Path(argv[0])
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / FILE_NAME
    ROOT.sparkhep_types.write(str(path))
    (directory / VALUES_NAME).write_text(json.dumps(read_back(path, ROOT)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
