#!/usr/bin/env bats
# G, D and VGG16[:16] against PyTorch on the same weights and inputs: outputs
# and gradients (bench/parity.py), and p2p-gen's images. Needs a Python with
# torch and numpy (Debian's python3-torch); without one, the tests skip and
# say so. The weights and inputs come from the unit-test binary.
load helper

torch_python() {
	local py
	for py in python3 /usr/bin/python3; do
		"$py" -c 'import torch, numpy' 2>/dev/null && { echo "$py"; return 0; }
	done
	return 1
}

setup() {
	export HOME=$BATS_TEST_TMPDIR
	cd "$BATS_TEST_TMPDIR" || return 1
	PY=$(torch_python) ||
		skip "PyTorch is not importable (Debian: apt-get install python3-torch)"
	"$P2P_BIN/../tests/test_models" --parity .
}

@test "G, D and VGG16: outputs and gradients match PyTorch within 1e-4" {
	run -0 "$PY" "$TOP/bench/parity.py" .
	echo "$output"
	[ "${lines[0]:0:3}" = "G: " ]
	[ "${lines[1]:0:3}" = "D: " ]
	[ "${lines[2]:0:5}" = "VGG: " ]
}

@test "a wrong gradient is caught" {
	# scale one of p2pcat's gradients by 1.001: the comparison must fail
	"$PY" - <<'EOF'
import json, struct
path = "G.io.safetensors"
raw = bytearray(open(path, "rb").read())
n = struct.unpack("<Q", raw[:8])[0]
lo, hi = json.loads(raw[8:8 + n])["grad.up.2.weight"]["data_offsets"]
base = 8 + n
vals = struct.unpack(f"<{(hi - lo) // 4}f", raw[base + lo:base + hi])
raw[base + lo:base + hi] = struct.pack(f"<{len(vals)}f", *[v * 1.001 for v in vals])
open(path, "wb").write(raw)
EOF
	run -1 "$PY" "$TOP/bench/parity.py" .
	[[ $output == *"G grad.up.2.weight"*FAIL* ]]
}

@test "p2p-gen's image is PyTorch's, to the rounding" {
	"$PY" -c 'import PIL' 2>/dev/null || skip "PIL is not importable (python3-pil)"
	echo '{"id": "h", "points": [[20, 20], [40, 22], [30, 40], [31, 50]]}' |
		lm2heat -o . --size 64 >/dev/null 2>&1
	p2p-gen -m G.safetensors - < h.npy > h.png 2>/dev/null
	run -0 "$PY" "$TOP/bench/parity.py" --gen G.safetensors h.npy h.png
	echo "$output"
}
