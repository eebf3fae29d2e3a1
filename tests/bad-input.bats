#!/usr/bin/env bats
# Bad input, program by program: the cases of the table in tests/BAD-INPUT.md
# that the programs' own suites leave open. Each test pins the exit status
# and the exact message, and that nothing half-written is left behind: no
# temp file, no partial output, a previous file unchanged. A full disk is a
# 1 MiB tmpfs filled up; where tmpfs cannot be mounted (not root, or no
# CAP_SYS_ADMIN) those tests skip and say so.
load helper

PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

setup_file() {
	cd "$BATS_FILE_TMPDIR" || return 1
	$PY "$FIXTURES/p2p-train/mkdata.py" data 32 6 2 1
	p2p-train --data data --out run --epochs 1 --batch 3 --ngf 4 --ndf 4 --lambda-perc 0 \
		--threads 1 --quiet
	# a PNG whose 69 bytes declare 60000 x 60000 pixels
	$PY - <<'EOF'
import struct, zlib
def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
with open("huge.png", "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100))
            + chunk(b"IEND", b""))
EOF
}

setup() {
	export HOME=$BATS_TEST_TMPDIR
	cd "$BATS_TEST_TMPDIR" || return 1
	S=$BATS_FILE_TMPDIR
	: >"$BATS_TEST_TMPDIR/.mounts"
}

teardown() {
	local m
	while read -r m; do
		umount -l "$m" 2>/dev/null || true
	done <"$BATS_TEST_TMPDIR/.mounts"
}

# full_disk DIR [SIZE]: a tmpfs of SIZE (1m) at DIR, filled to the last block
# when SIZE is not given; skips the test where tmpfs cannot be mounted.
full_disk() {
	mkdir -p "$1"
	mount -t tmpfs -o "size=${2:-1m}" tmpfs "$1" 2>/dev/null ||
		skip "cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)"
	echo "$PWD/$1" >>"$BATS_TEST_TMPDIR/.mounts"
	[ -n "${2:-}" ] || fill "$1"
}

# fill DIR: take every free block of DIR's file system
fill() {
	dd if=/dev/zero of="$1/filler" bs=4k 2>/dev/null || true
}

# no_temp DIR: no hidden file (the atomic writers' temp files) anywhere in DIR
no_temp() {
	[ -z "$(find "$1" -name '.*' ! -name . ! -name .. -print -quit)" ]
}

# npy OUT DESCR SHAPE [VALUE]: a .npy file; VALUE fills a <f4 array (nan
# and inf allowed), |u1 arrays are zeros; "-" as SHAPE's data omits the data
npy() {
	$PY - "$@" <<'EOF'
import struct, sys
out, descr, shape = sys.argv[1:4]
value = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
dims = [int(d) for d in shape.split(",") if d]
h = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
    descr, ", ".join(map(str, dims)) + ("," if len(dims) == 1 else ""))
h += " " * (-(10 + len(h) + 1) % 64) + "\n"
n = 1
for d in dims:
    n *= d
data = b"" if n > 1 << 24 else (struct.pack("<%df" % n, *[value] * n) if descr == "<f4" else bytes(n))
with open(out, "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() + data)
EOF
}

# ---- catflw-synth ----

@test "catflw-synth: a full disk: exit 1, the file named, nothing half-written" {
	full_disk full
	run -1 --separate-stderr catflw-synth -q -o full/set -n 4 -s 32
	[[ $stderr =~ ^catflw-synth:\ full/set/images/0000000[0-3]_000\.png:\ write\ failed:\ No\ space\ left\ on\ device$ ]]
	[ -z "$output" ]
	no_temp full
	[ -z "$(ls full/set/images)" ]
}

# ---- catflw-crop ----

@test "catflw-crop: empty, oversized and empty-image label sets, a huge image: named, skipped" {
	mkdir -p cf/labels cf/images
	good=$FIXTURES/catflw-crop/good
	: >cf/labels/empty.json
	head -c 1048577 /dev/zero | tr '\0' ' ' >cf/labels/big.json
	cp "$good/labels/a.json" cf/labels/noimg.json
	: >cf/images/noimg.png
	cp "$good/labels/a.json" cf/labels/huge.json
	cp "$S/huge.png" cf/images/huge.png
	cp "$good/labels/b.json" cf/labels/ok.json
	cp "$good/images/b.png" cf/images/ok.png
	run -0 --separate-stderr catflw-crop -o out cf
	[ "${#lines[@]}" -eq 1 ] && [[ ${lines[0]} == '{"id":"ok",'* ]]
	diff -u - <(printf '%s\n' "${stderr_lines[@]}") <<'EOF'
catflw-crop: cf/labels/big.json: larger than 1048576 bytes
catflw-crop: cf/labels/empty.json: empty file
catflw-crop: cf/images/huge.png: 60000x60000 is too large an image
catflw-crop: cf/images/noimg.png: not a PNG, JPEG, WebP or TIFF image
catflw-crop: 1 cropped, 4 skipped
EOF
	[ "$(ls -A out)" = ok.jpg ]
}

@test "catflw-crop: a full disk: each crop named and skipped, --strict stops; a full stdout: exit 1" {
	full_disk full
	run -0 --separate-stderr catflw-crop -o full/crops "$FIXTURES/catflw-crop/good"
	[ -z "$output" ]
	diff -u - <(printf '%s\n' "${stderr_lines[@]}") <<'EOF'
catflw-crop: full/crops/a.jpg: write failed: No space left on device
catflw-crop: full/crops/b.jpg: write failed: No space left on device
catflw-crop: full/crops/c.jpg: write failed: No space left on device
catflw-crop: 0 cropped, 3 skipped
EOF
	run -1 --separate-stderr catflw-crop -o full/crops --strict "$FIXTURES/catflw-crop/good"
	[ "$stderr" = "catflw-crop: full/crops/a.jpg: write failed: No space left on device" ]
	no_temp full
	[ -z "$(ls -A full/crops)" ]
}

@test "catflw-crop: a full stdout: exit 1, one line" {
	run -1 --separate-stderr bash -c "catflw-crop -o crops $FIXTURES/catflw-crop/good >/dev/full"
	[ "${stderr_lines[-1]}" = "catflw-crop: stdout: write failed: No space left on device" ]
	no_temp crops
}

# ---- lm2heat ----

@test "lm2heat: NUL bytes, text after the object, a blank first line, a 16 MiB line, a huge image" {
	cp "$S/huge.png" .
	{
		printf '\n'
		printf '{"id":"a","points":[[1,1]]} {}\n'
		printf '{"id":"b\0c","points":[[1,1]]}\n'
		head -c 16777300 /dev/zero | tr '\0' ' '
		printf '\n{"id":"h","image":"huge.png","points":[[1,1]]}\n'
		printf '{"id":"ok","image":"huge.png","points":[[1,1]]}\n'
	} >in.jsonl
	run -0 --separate-stderr lm2heat -o heat --size 8 in.jsonl
	[ "${#lines[@]}" -eq 2 ]
	diff -u - <(printf '%s\n' "${stderr_lines[@]}") <<'EOF'
lm2heat: in.jsonl:2: not valid JSON
lm2heat: in.jsonl:3: contains a NUL byte, not JSON
lm2heat: in.jsonl:4: line longer than 16777216 bytes
lm2heat: 2 written, 3 skipped
EOF
	# without --size the image is opened, and its header alone is too much
	tail -n 2 in.jsonl >two.jsonl
	run -0 --separate-stderr lm2heat -o heat2 two.jsonl
	[ -z "$output" ]
	diff -u - <(printf '%s\n' "${stderr_lines[@]}") <<'EOF'
lm2heat: two.jsonl:1: huge.png: 60000x60000 is too large an image
lm2heat: two.jsonl:2: huge.png: 60000x60000 is too large an image
lm2heat: 0 written, 2 skipped
EOF
	[ ! -e heat2 ] || [ -z "$(ls -A heat2)" ]
}

@test "lm2heat: an unwritable output folder, a full disk, a full stdout" {
	echo '{"id":"a","points":[[1,1]]}' >one.jsonl
	touch file
	run -1 --separate-stderr lm2heat -o file/heat --size 8 one.jsonl
	[ "$stderr" = "lm2heat: file/heat: cannot create folder: Not a directory" ]
	[ -z "$output" ]
	run -1 --separate-stderr bash -c 'lm2heat -o heat --size 8 one.jsonl >/dev/full'
	[ "$stderr" = "lm2heat: stdout: write failed: No space left on device" ]
	run -1 --separate-stderr bash -c 'lm2heat -o - --size 8 one.jsonl >/dev/full'
	[ "$stderr" = "lm2heat: stdout: write failed: No space left on device" ]
	full_disk full
	run -0 --separate-stderr lm2heat -o full/heat --size 8 one.jsonl
	[ -z "$output" ]
	[ "$stderr" = "$(printf '%s\n' \
		"lm2heat: one.jsonl:1: full/heat/a.npy: write failed: No space left on device" \
		"lm2heat: 0 written, 1 skipped")" ]
	run -1 --separate-stderr lm2heat -o full/heat --size 8 --strict one.jsonl
	[ "$stderr" = "lm2heat: one.jsonl:1: full/heat/a.npy: write failed: No space left on device" ]
	no_temp full
	[ -z "$(ls -A full/heat)" ]
}

# ---- splitset ----

@test "splitset: NaN and infinite heatmaps, a huge declared shape, wrong dtype, a PNG for a heatmap" {
	npy nan.npy '<f4' 32,32 nan
	npy inf.npy '<f4' 32,32 inf
	npy huge.npy '|u1' 99999999,99999999
	npy f8.npy '<f8' 4,4
	img=$S/data/train/B/cat0000.png
	for h in nan inf huge f8; do
		echo "{\"id\":\"$h\",\"image\":\"$img\",\"heatmap\":\"$h.npy\"}"
	done >in.jsonl
	echo "{\"id\":\"png\",\"image\":\"$img\",\"heatmap\":\"$img\"}" >>in.jsonl
	echo "{\"id\":\"ok\",\"image\":\"$img\",\"heatmap\":\"$S/data/train/A/cat0000.npy\"}" >>in.jsonl
	run -0 --separate-stderr splitset -o ds in.jsonl
	[ -z "$output" ]
	diff -u - <(printf '%s\n' "${stderr_lines[@]}") <<EOF
splitset: in.jsonl:1: nan.npy: value 0 is not finite
splitset: in.jsonl:2: inf.npy: value 0 is not finite
splitset: in.jsonl:3: huge.npy: shape too large
splitset: in.jsonl:4: f8.npy: unsupported dtype (want |u1 or <f4)
splitset: in.jsonl:5: $img: not a .npy file
splitset: 1 written, 5 skipped: 0 train, 0 val, 1 test
EOF
	[ "$(cat ds/test.jsonl | wc -l)" -eq 1 ]
}

@test "splitset: an unwritable ROOT, a full disk: exit 1, ROOT as it was" {
	for i in 0 1 2 3 4 5; do
		echo "{\"id\":\"c$i\",\"image\":\"$S/data/train/B/cat000$i.png\",\"heatmap\":\"$S/data/train/A/cat000$i.npy\"}"
	done >in.jsonl
	touch file
	run -1 --separate-stderr splitset -o file/ds in.jsonl
	[ "$stderr" = "splitset: file/ds: cannot create folder: Not a directory" ]
	# on another file system than the data: no hard links, copies that fill it
	full_disk full 1m
	splitset -o full/ds in.jsonl 2>/dev/null
	before=$(cd full/ds && find . | LC_ALL=C sort && cat ./*.jsonl)
	fill full
	run -1 --separate-stderr splitset -o full/ds --seed 7 in.jsonl
	[[ $stderr =~ ^splitset:\ full/ds/\.splitset\.[A-Za-z0-9]{6}/[a-z]+/[AB]/c[0-5]\.(npy|png):\ write\ failed:\ No\ space\ left\ on\ device$ ]]
	[ "$(cd full/ds && find . | LC_ALL=C sort && cat ./*.jsonl)" = "$before" ]
	no_temp full/ds
}

# ---- p2p-train ----

# the tiny configuration of tests/p2p-train.bats
train() {
	p2p-train --batch 3 --ngf 4 --ndf 4 --lambda-perc 0 --threads 1 --quiet --epochs 1 "$@"
}

@test "p2p-train: an empty, truncated, NaN, huge, mistyped or mis-sized file in the data set" {
	# bad_data NAME FILE: a copy of the data set with FILE (relative) replaced
	# by ./NAME's bytes; then the run must fail naming FILE, and write nothing
	check() {
		rm -rf d && cp -r "$S/data" d && cp "$1" "d/$2"
		run -1 --separate-stderr train --data d --out run
		[ "$stderr" = "p2p-train: d/$2: $3" ] || { echo "got: $stderr"; return 1; }
		[ ! -e run ]
	}
	: >empty
	head -c 100 "$S/data/train/A/cat0001.npy" >trunc.npy
	npy nan.npy '<f4' 32,32 nan
	npy huge.npy '|u1' 99999999,99999999
	echo junk >junk.png
	cp "$FIXTURES/lm2heat/cat64x48.jpg" wide.png
	check empty train/A/cat0001.npy "not a .npy file"
	check trunc.npy train/A/cat0001.npy "truncated header"
	check nan.npy val/A/cat0006.npy "value 0 is not finite"
	check huge.npy train/A/cat0002.npy "shape too large"
	check junk.png train/B/cat0001.png 'cannot read image: VipsForeignLoad: "d/train/B/cat0001.png" is not a known file format'
	check empty train/B/cat0003.png 'cannot read image: VipsForeignLoad: "d/train/B/cat0003.png" is not a known file format'
	check wide.png val/B/cat0007.png "image is 64x48, expected 32x32"
	cp "$S/huge.png" huge.png
	check huge.png train/B/cat0004.png "60000x60000 is too large an image"
	# empty folders
	mkdir -p e/train/A e/train/B e/val/A e/val/B
	run -1 --separate-stderr train --data e --out run
	[ "$stderr" = "p2p-train: e/train: no samples (no .npy in e/train/A)" ]
	[ ! -e run ]
}

@test "p2p-train: a checkpoint or VGG16 file that is empty, truncated, not weights or claims a huge header" {
	mkdir r1 r2
	: >r1/last_checkpoint.safetensors
	run -1 --separate-stderr train --data "$S/data" --out r1
	[ "$stderr" = "p2p-train: r1/last_checkpoint.safetensors: too short for a safetensors file (0 bytes) (pass --no-resume to start over)" ]
	[ ! -s r1/last_checkpoint.safetensors ] && [ "$(ls -A r1)" = last_checkpoint.safetensors ]
	printf '\377\377\377\377\377\377\377\177{}' >r2/last_checkpoint.safetensors
	run -1 --separate-stderr train --data "$S/data" --out r2
	[ "$stderr" = "p2p-train: r2/last_checkpoint.safetensors: the header claims 9223372036854775807 bytes (limit 104857600): not a safetensors file? (pass --no-resume to start over)" ]
	# --vgg16 files, read before any work
	: >vgg0
	run -1 --separate-stderr train --data "$S/data" --out r3 --lambda-perc 2 --vgg16 vgg0
	[ "$stderr" = "p2p-train: vgg0: too short for a safetensors file (0 bytes)" ]
	$PY "$FIXTURES/p2p-train/mkvgg.py" vgg
	head -c 3000 vgg >vggt
	run -1 --separate-stderr train --data "$S/data" --out r3 --lambda-perc 2 --vgg16 vggt
	[ "$stderr" = 'p2p-train: vggt: tensor "features.0.weight": data_offsets [0, 6912] run past the end of the data (1808 bytes)' ]
	run -1 --separate-stderr train --data "$S/data" --out r3 --lambda-perc 2 --vgg16 "$S/run/G_best.safetensors"
	[ "$stderr" = "p2p-train: $S/run/G_best.safetensors: no tensor \"features.0.weight\"" ]
	run -1 --separate-stderr train --data "$S/data" --out r3 --lambda-perc 2 --vgg16 "$S/huge.png"
	[[ $stderr == "p2p-train: $S/huge.png: the header claims "*" bytes (limit 104857600): not a safetensors file?" ]]
	[ ! -e r3 ]
}

@test "p2p-train: an unwritable run folder; a full disk: exit 1, the previous run kept whole" {
	touch file
	run -1 --separate-stderr train --data "$S/data" --out file/run
	[ "$stderr" = "p2p-train: file/run: cannot create folder: Not a directory" ]
	full_disk full 1m
	run -1 --separate-stderr train --data "$S/data" --out full/run
	[ "$stderr" = "p2p-train: full/run/last_checkpoint.safetensors: write failed: No space left on device" ]
	no_temp full
	[ ! -e full/run/last_checkpoint.safetensors ]
	# room for one run, then none: epoch 2 fails and epoch 1's files stay as they were
	umount -l full && full_disk full 3m
	train --data "$S/data" --out full/run
	cp -r full/run before
	fill full
	run -1 --separate-stderr train --data "$S/data" --out full/run --epochs 2
	[[ $stderr =~ ^p2p-train:\ full/run/[A-Za-z_]+\.safetensors:\ write\ failed:\ No\ space\ left\ on\ device$ ]]
	diff -r before full/run
	no_temp full
}

# ---- p2p-gen ----

@test "p2p-gen: empty, truncated, NaN and huge heatmaps: named, skipped; an empty model: exit 1" {
	G=$S/run/G_best.safetensors
	: >empty.npy
	head -c 100 "$S/data/train/A/cat0001.npy" >trunc.npy
	npy nan.npy '<f4' 32,32 nan
	npy huge.npy '|u1' 99999999,99999999
	npy wide.npy '|u1' 70000,1
	run -0 --separate-stderr p2p-gen -m "$G" -o out empty.npy trunc.npy nan.npy huge.npy wide.npy \
		"$S/data/train/A/cat0001.npy"
	diff -u - <(printf '%s\n' "${stderr_lines[@]}") <<'EOF'
p2p-gen: empty.npy: not a .npy file
p2p-gen: huge.npy: shape too large
p2p-gen: nan.npy: value 0 is not finite
p2p-gen: trunc.npy: truncated header
p2p-gen: wide.npy: expected a 2-D heatmap (H, W)
p2p-gen: 1 written, 5 skipped
EOF
	[ "$(ls out)" = cat0001.png ]
	: >empty.safetensors
	run -1 --separate-stderr p2p-gen -m empty.safetensors -o out2 "$S/data/train/A/cat0001.npy"
	[ "$stderr" = "p2p-gen: empty.safetensors: too short for a safetensors file (0 bytes)" ]
	[ ! -e out2 ]
}

@test "p2p-gen: an unwritable output folder, a full disk, a full stdout" {
	G=$S/run/G_best.safetensors
	A=$S/data/train/A
	touch file
	run -1 --separate-stderr p2p-gen -m "$G" -o file/out "$A/cat0001.npy"
	[ "$stderr" = "p2p-gen: file/out: cannot create folder: Not a directory" ]
	run -1 --separate-stderr bash -c "p2p-gen -m $G - <$A/cat0001.npy >/dev/full"
	[ "$stderr" = "p2p-gen: stdout: write failed: No space left on device" ]
	full_disk full
	run -0 --separate-stderr p2p-gen -m "$G" -o full/out "$A/cat0001.npy" "$A/cat0002.npy"
	diff -u - <(printf '%s\n' "${stderr_lines[@]}") <<'EOF'
p2p-gen: full/out/cat0001.png: write failed: No space left on device
p2p-gen: full/out/cat0002.png: write failed: No space left on device
p2p-gen: 0 written, 2 skipped
EOF
	run -1 --separate-stderr p2p-gen -m "$G" -o full/out --strict "$A/cat0001.npy" "$A/cat0002.npy"
	[ "$stderr" = "p2p-gen: full/out/cat0001.png: write failed: No space left on device" ]
	run -1 --separate-stderr p2p-gen -m "$G" -o out --grid full/grid.png "$A/cat0001.npy"
	[ "$stderr" = "p2p-gen: full/grid.png: write failed: No space left on device" ]
	no_temp full
	[ -z "$(ls -A full/out)" ] && [ ! -e full/grid.png ]
}

# ---- p2p-metrics ----

@test "p2p-metrics: a truncated and a huge image: named, skipped; a full stdout: exit 1" {
	F=$FIXTURES/p2p-metrics
	cp -r "$F/pred" pred
	cp -r "$F/truth" truth
	head -c 300 "$F/pred/cat1.png" >pred/cat1.png
	cp "$S/huge.png" pred/cat2.png
	run -0 --separate-stderr p2p-metrics pred truth
	[[ $output == '{"count":1,'*'"skipped":2}' ]]
	diff -u - <(printf '%s\n' "${stderr_lines[@]}") <<'EOF'
p2p-metrics: pred/cat1.png: cannot read image: vipspng: libpng read error
p2p-metrics: pred/cat2.png: 60000x60000 is too large an image
p2p-metrics: 1 scored, 2 skipped
EOF
	run -1 --separate-stderr bash -c "p2p-metrics $F/pred $F/truth >/dev/full"
	[ "${stderr_lines[-1]}" = "p2p-metrics: stdout: write failed: No space left on device" ]
}
