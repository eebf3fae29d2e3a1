#!/usr/bin/env bats
# p2p-gen: images from heatmaps with a small random generator (32x32, ngf 4,
# written here by a few lines of Python), determinism, dropout seeds, the
# filter, the contact sheet, shards, and every kind of bad input.
load helper

# mkg OUT [key=value ...]: a generator file in safetensors, weights N(0, 0.2)
# from a seed. Keys: size ngf seed prefix (of the names), drop (a tensor to
# leave out), shape (a tensor to give a wrong shape), nan (a tensor to poison),
# meta_NAME=VALUE (set a metadata entry; VALUE "-" removes it).
mkg() {
	python3 - "$@" <<'EOF'
import json, math, random, struct, sys
out, opts = sys.argv[1], dict(a.split("=", 1) for a in sys.argv[2:])
size, ngf = int(opts.get("size", 32)), int(opts.get("ngf", 4))
rng = random.Random(int(opts.get("seed", 1)))
k = size.bit_length() - 1
ch = [ngf * min(2 ** i, 8) for i in range(k)]
shapes = {}
for i in range(k):
    shapes[f"down.{i}.weight"] = [ch[i], 1 if i == 0 else ch[i - 1], 4, 4]
    shapes[f"down.{i}.bias"] = [ch[i]]
for j in range(k):
    i = k - 1 - j
    cout = ch[i - 1] if i > 0 else 3
    shapes[f"up.{j}.weight"] = [ch[i] if i == k - 1 else 2 * ch[i], cout, 4, 4]
    shapes[f"up.{j}.bias"] = [cout]
meta = {"arch": "unet", "size": str(size), "in_ch": "1", "out_ch": "3",
        "ngf": str(ngf), "dropout": "0.5", "norm": "instance"}
for key, v in opts.items():
    if key.startswith("meta_"):
        meta[key[5:]] = v
meta = {a: b for a, b in meta.items() if b != "-"}
header, blobs, off = {"__metadata__": meta}, [], 0
for name, shape in shapes.items():
    if name == opts.get("drop"):
        continue
    if name == opts.get("shape"):
        shape = shape[:-1] + [shape[-1] + 1]
    n = math.prod(shape)
    vals = [rng.gauss(0, 0.2) for _ in range(n)]
    if name == opts.get("nan"):
        vals[0] = float("nan")
    blob = struct.pack(f"<{n}f", *vals)
    key = opts.get("prefix", "") + name
    header[key] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(blob)]}
    blobs.append(blob)
    off += len(blob)
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
EOF
}

# heat ID X Y [SIZE]: a heatmap DIR-less ID.npy with two landmarks, by lm2heat.
heat() {
	echo "{\"id\": \"$1\", \"points\": [[$2, $3], [$(($2 + 9)), $3], [$2, $(($3 + 7))]]}" |
		lm2heat -o . --size "${4:-32}" >/dev/null 2>&1
}

# f4npy OUT VALUE: a 32x32 <f4 heatmap, every value VALUE.
f4npy() {
	python3 - "$1" "$2" <<'EOF'
import struct, sys
h = "{'descr': '<f4', 'fortran_order': False, 'shape': (32, 32), }"
h += " " * (-(10 + len(h) + 1) % 64) + "\n"
with open(sys.argv[1], "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode())
    f.write(struct.pack("<1024f", *[float(sys.argv[2])] * 1024))
EOF
}

# png_size FILE: "W H" from the IHDR chunk.
png_size() {
	od -A n -t u1 -j 16 -N 8 "$1" | awk '{ print $3 * 256 + $4, $7 * 256 + $8 }'
}

setup_file() {
	cd "$BATS_FILE_TMPDIR" || return 1
	mkg G.safetensors
	mkdir -p heat
	cd heat
	heat a 8 8
	heat b 14 10
	heat c 5 18
	heat d 20 6
	heat e 11 12
	heat big 20 20 64
}

setup() {
	export HOME=$BATS_TEST_TMPDIR
	cd "$BATS_TEST_TMPDIR" || return 1
	G=$BATS_FILE_TMPDIR/G.safetensors
	H=$BATS_FILE_TMPDIR/heat
}

@test "--help and --version" {
	run -0 p2p-gen --help
	[[ ${lines[0]} == "Usage: p2p-gen -m G.safetensors"* ]]
	run -0 p2p-gen -h
	run -0 p2p-gen --version
	[ "$output" = "p2p-gen p2pcat 0.1.0" ]
}

@test "usage errors exit 2 with a message" {
	run -2 --separate-stderr p2p-gen "$H/a.npy"
	[ "${stderr_lines[0]}" = "p2p-gen: -m G.safetensors is required" ]
	[ "${stderr_lines[1]}" = "Try 'p2p-gen --help' for more information." ]
	run -2 --separate-stderr p2p-gen -m "$G" "$H/a.npy"
	[ "${stderr_lines[0]}" = "p2p-gen: -o DIR is required for files (or read one heatmap from '-')" ]
	run -2 --separate-stderr p2p-gen -m "$G" -o out -
	[ "${stderr_lines[0]}" = "p2p-gen: '-' writes the image to stdout: -o DIR is for files" ]
	run -2 --separate-stderr p2p-gen -m "$G" -o out "$H/a.npy" -
	[ "${stderr_lines[0]}" = "p2p-gen: '-' must be the only input" ]
	run -2 --separate-stderr p2p-gen -m "$G" --seed 3 -
	[ "${stderr_lines[0]}" = "p2p-gen: --seed only matters with --stochastic (dropout is off without it)" ]
	run -2 --separate-stderr p2p-gen -m "$G" --shard 0/2 -
	[ "${stderr_lines[0]}" = "p2p-gen: --shard splits a list of files; '-' is one input" ]
	run -2 --separate-stderr p2p-gen -m "$G" --batch 0 -
	[ "${stderr_lines[0]}" = "p2p-gen: --batch: 0 is out of range [1, 1024]" ]
	run -2 --separate-stderr p2p-gen -m "$G" --device gpu -
	[ "${stderr_lines[0]}" = "p2p-gen: --device: cpu or cuda, not 'gpu'" ]
	run -2 --separate-stderr p2p-gen -m "$G" --bogus -
	[ "${stderr_lines[0]}" = "p2p-gen: unknown option '--bogus'" ]
	run -2 --separate-stderr p2p-gen -m "$G" -o out --shard 2/2 "$H/a.npy"
	run -2 --separate-stderr p2p-gen -m "$G" --grid "" -
	[ ! -e out ]
}

@test "one PNG per heatmap, named by its stem, and a summary" {
	run -0 --separate-stderr p2p-gen -m "$G" -o out "$H"/[a-e].npy
	[ "$stderr" = "p2p-gen: 5 written, 0 skipped" ]
	[ -z "$output" ]
	for s in a b c d e; do
		[ "$(png_size out/$s.png)" = "32 32" ]
		[ "$(od -A n -t u1 -j 25 -N 1 out/$s.png | tr -d ' ')" = 2 ]    # RGB, 8 bits
	done
	[ "$(ls out | wc -l)" = 5 ]
	# images of different heatmaps differ
	run -1 cmp -s out/a.png out/b.png
}

@test "deterministic: same bytes twice, in any batch, alone or with others" {
	p2p-gen -m "$G" -o one "$H"/[a-e].npy 2>/dev/null
	p2p-gen -m "$G" -o two -b 2 "$H"/[a-e].npy 2>/dev/null
	p2p-gen -m "$G" -o three -b 1 -t 1 "$H/c.npy" 2>/dev/null
	for s in a b c d e; do cmp one/$s.png two/$s.png; done
	cmp one/c.png three/c.png
}

@test "deterministic in any batch where layers run by Winograd (64x64, ngf 16)" {
	# down.1 and the up convolution at 16x16 run by Winograd F(5x5, 2x2)
	# on the CPU; whether they do must not depend on the batch
	mkg G64.safetensors size=64 ngf=16 seed=3
	mkdir h64
	(cd h64 && heat p 20 20 64 && heat q 9 30 64 && heat r 40 12 64)
	p2p-gen -m G64.safetensors -o one -b 1 h64/*.npy 2>/dev/null
	p2p-gen -m G64.safetensors -o three -b 3 -t 1 h64/*.npy 2>/dev/null
	for s in p q r; do cmp one/$s.png three/$s.png; done
}

@test "the filter: one .npy on stdin, one PNG on stdout" {
	p2p-gen -m "$G" -o out "$H/b.npy" 2>/dev/null
	run -0 --separate-stderr p2p-gen -m "$G" - < "$H/b.npy"
	[ "$stderr" = "p2p-gen: 1 written, 0 skipped" ]
	p2p-gen -m "$G" - < "$H/b.npy" > b.png 2>/dev/null
	cmp b.png out/b.png
	p2p-gen -m "$G" < "$H/b.npy" > b2.png 2>/dev/null   # no operand: stdin
	cmp b2.png out/b.png
	# straight from lm2heat
	echo '{"points": [[14, 10], [23, 10], [14, 17]]}' |
		lm2heat -o - --size 32 2>/dev/null | p2p-gen -m "$G" > piped.png 2>/dev/null
	cmp piped.png out/b.png
	# a bad heatmap is the filter's only input: exit 1, nothing on stdout
	run -1 --separate-stderr p2p-gen -m "$G" - < "$G"
	[ "$stderr" = "p2p-gen: stdin: not a .npy file" ]
	[ -z "$output" ]
	run -1 --separate-stderr p2p-gen -m "$G" - < "$H/big.npy"
	[ "$stderr" = "p2p-gen: stdin: 64x64 heatmap, the model is 32x32" ]
}

@test "--stochastic: another seed, another image; a seed is reproducible" {
	p2p-gen -m "$G" -o det "$H/a.npy" "$H/b.npy" 2>/dev/null
	p2p-gen -m "$G" -o s1 --stochastic --seed 1 "$H"/[a-e].npy 2>/dev/null
	p2p-gen -m "$G" -o s1b --stochastic --seed 1 -b 3 "$H"/[a-e].npy 2>/dev/null
	p2p-gen -m "$G" -o s2 --stochastic --seed 2 "$H/a.npy" "$H/b.npy" 2>/dev/null
	p2p-gen -m "$G" -o s1c --stochastic --seed 1 "$H/b.npy" 2>/dev/null
	for s in a b c d e; do cmp s1/$s.png s1b/$s.png; done
	cmp s1/b.png s1c/b.png          # the mask follows the file, not the list
	run -1 cmp -s s1/a.png s2/a.png
	run -1 cmp -s s1/b.png s2/b.png
	run -1 cmp -s s1/a.png det/a.png
	p2p-gen -m "$G" --stochastic - < "$H/a.npy" > f0.png 2>/dev/null
	p2p-gen -m "$G" --stochastic --seed 0 - < "$H/a.npy" > f0b.png 2>/dev/null
	p2p-gen -m "$G" --stochastic --seed 5 - < "$H/a.npy" > f5.png 2>/dev/null
	cmp f0.png f0b.png
	run -1 cmp -s f0.png f5.png
}

@test "--grid: heatmap | image pairs, four to a row, in input order" {
	run -0 --separate-stderr p2p-gen -m "$G" -o out --grid sheet.png "$H"/[a-c].npy
	[ "$(png_size sheet.png)" = "192 32" ]
	run -0 --separate-stderr p2p-gen -m "$G" -o out --grid sheet.png "$H"/*.npy
	[ "$stderr" = "p2p-gen: $H/big.npy: 64x64 heatmap, the model is 32x32
p2p-gen: 5 written, 1 skipped" ]
	[ "$(png_size sheet.png)" = "256 64" ]
	p2p-gen -m "$G" --grid one.png - < "$H/a.npy" > a.png 2>/dev/null
	[ "$(png_size one.png)" = "64 32" ]
	run -2 --separate-stderr p2p-gen -m "$G" -o out --grid sheet.bmp "$H/a.npy"
	[ "${stderr_lines[0]}" = "p2p-gen: --grid: a .png or .jpg file name, not 'sheet.bmp'" ]
}

@test "--shard splits the sorted list; SLURM's variables set the default" {
	p2p-gen -m "$G" -o all "$H"/[a-e].npy 2>/dev/null
	run -0 --separate-stderr p2p-gen -m "$G" -o sh --shard 0/2 \
		"$H/e.npy" "$H/c.npy" "$H/d.npy" "$H/b.npy" "$H/a.npy" "$H/c.npy"
	# sorted: a b c c d e -> shard 0 takes a c d; the second c is skipped as a duplicate
	[ "$stderr" = "p2p-gen: 3 written, 0 skipped" ]
	SLURM_ARRAY_TASK_ID=1 SLURM_ARRAY_TASK_COUNT=2 run -0 --separate-stderr \
		p2p-gen -m "$G" -o sh "$H"/[a-e].npy "$H/c.npy"
	[ "${stderr_lines[0]}" = "p2p-gen: $H/c.npy: same output name as $H/c.npy" ]
	[ "$(ls sh | tr '\n' ' ')" = "a.png b.png c.png d.png e.png " ]
	for s in a b c d e; do cmp all/$s.png sh/$s.png; done
	run -0 --separate-stderr p2p-gen -m "$G" -o none --shard 7/8 "$H/a.npy"
	[ "$stderr" = "p2p-gen: 0 written, 0 skipped" ]
}

@test "bad heatmaps are skipped and counted; --strict stops at the first" {
	mkdir sub
	cp "$H/a.npy" sub/a.npy
	f4npy half.npy 0.5
	f4npy over.npy 1.5
	echo junk > junk.npy
	run -0 --separate-stderr p2p-gen -m "$G" -o out "$H/a.npy" sub/a.npy "$H/big.npy" \
		nope.npy junk.npy half.npy over.npy
	[ "${stderr_lines[0]}" = "p2p-gen: $H/big.npy: 64x64 heatmap, the model is 32x32" ]
	[ "${stderr_lines[1]}" = "p2p-gen: junk.npy: not a .npy file" ]
	[ "${stderr_lines[2]}" = "p2p-gen: nope.npy: cannot open: No such file or directory" ]
	[ "${stderr_lines[3]}" = "p2p-gen: over.npy: value 1.5 at row 0, column 0 is outside [0, 1]" ]
	[ "${stderr_lines[4]}" = "p2p-gen: sub/a.npy: same output name as $H/a.npy" ]
	[ "${stderr_lines[5]}" = "p2p-gen: 2 written, 5 skipped" ]
	[ "$(ls out | tr '\n' ' ')" = "a.png half.png " ]
	run -1 --separate-stderr p2p-gen -m "$G" -o strict --strict "$H/a.npy" nope.npy
	[ "$stderr" = "p2p-gen: nope.npy: cannot open: No such file or directory" ]
	# an image that cannot be written is skipped too
	mkdir ro && chmod 555 ro
	if [ ! -w ro ]; then
		run -0 --separate-stderr p2p-gen -m "$G" -o ro "$H/a.npy"
		[[ ${stderr_lines[0]} == "p2p-gen: ro/a.png: "* ]]
		[ "${stderr_lines[1]}" = "p2p-gen: 0 written, 1 skipped" ]
	fi
}

@test "a bad model file: one line, exit 1, nothing written" {
	run -1 --separate-stderr p2p-gen -m nope.safetensors -o out "$H/a.npy"
	[ "$stderr" = "p2p-gen: nope.safetensors: cannot open: No such file or directory" ]
	head -c 2000 "$G" > trunc.safetensors
	run -1 --separate-stderr p2p-gen -m trunc.safetensors -o out "$H/a.npy"
	[[ $stderr == "p2p-gen: trunc.safetensors: "* ]]
	[ "${#stderr_lines[@]}" = 1 ]
	run -1 --separate-stderr p2p-gen -m "$H/a.npy" -o out "$H/a.npy"
	[[ $stderr == "p2p-gen: $H/a.npy: "*"not a safetensors file?" ]]
	mkg noarch.safetensors meta_arch=-
	run -1 --separate-stderr p2p-gen -m noarch.safetensors -o out "$H/a.npy"
	[ "$stderr" = "p2p-gen: noarch.safetensors: no \"arch\" in the metadata (not a p2pcat generator)" ]
	mkg d.safetensors meta_arch=patchgan
	run -1 --separate-stderr p2p-gen -m d.safetensors -o out "$H/a.npy"
	[ "$stderr" = "p2p-gen: d.safetensors: a \"patchgan\" model, not a U-Net generator" ]
	mkg size.safetensors meta_size=48
	run -1 --separate-stderr p2p-gen -m size.safetensors -o out "$H/a.npy"
	[ "$stderr" = "p2p-gen: size.safetensors: size 48: a power of two from 32 to 512 is needed" ]
	mkg drop.safetensors drop=up.2.bias
	run -1 --separate-stderr p2p-gen -m drop.safetensors -o out "$H/a.npy"
	[[ $stderr == "p2p-gen: drop.safetensors: "*"up.2.bias"* ]]
	mkg shape.safetensors shape=down.3.weight
	run -1 --separate-stderr p2p-gen -m shape.safetensors -o out "$H/a.npy"
	[[ $stderr == "p2p-gen: shape.safetensors: "*"down.3.weight"* ]]
	mkg wide.safetensors meta_ngf=8
	run -1 --separate-stderr p2p-gen -m wide.safetensors -o out "$H/a.npy"
	[[ $stderr == "p2p-gen: wide.safetensors: "*"down.0.weight"* ]]
	mkg nan.safetensors nan=up.4.weight
	run -1 --separate-stderr p2p-gen -m nan.safetensors -o out "$H/a.npy"
	[ "$stderr" = "p2p-gen: nan.safetensors: the weights hold a NaN or infinity" ]
	[ ! -e out ]
}

@test "a training checkpoint's G.-prefixed names load too" {
	mkg ckpt.safetensors prefix=G.
	p2p-gen -m "$G" - < "$H/d.npy" > plain.png 2>/dev/null
	p2p-gen -m ckpt.safetensors - < "$H/d.npy" > ckpt.png 2>/dev/null
	cmp plain.png ckpt.png
}

@test "--device cuda: the CPU's images where a GPU works; one line, exit 1 elsewhere" {
	if p2p-gen -m "$G" --device cuda - < "$H/a.npy" > /dev/null 2>&1; then
		p2p-gen -m "$G" -o cpu "$H"/[a-e].npy 2>/dev/null
		p2p-gen -m "$G" -o gpu --device cuda -b 3 "$H"/[a-e].npy 2>/dev/null
		# equal up to float rounding: a few values one level apart at most
		run -0 p2p-metrics gpu cpu
		psnr=$(echo "$output" | sed 's/.*"psnr":\([0-9.]*\).*/\1/')
		echo "cpu vs cuda: $output"
		awk -v p="$psnr" 'BEGIN { exit !(p > 50) }'
	else
		run -1 --separate-stderr p2p-gen -m "$G" --device cuda - < "$H/a.npy"
		[[ $stderr == "p2p-gen: cuda: "* ]]
		[ "${#stderr_lines[@]}" = 1 ]
		[ -z "$output" ]
	fi
}
