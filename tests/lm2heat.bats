#!/usr/bin/env bats
# lm2heat: heatmaps read back (header, values at the landmarks, the exact
# formula everywhere), records passed through, bad records, shards.
load helper

setup() {
	export HOME=$BATS_TEST_TMPDIR
	cd "$BATS_TEST_TMPDIR" || return 1
	cp "$FIXTURES"/lm2heat/* .
}

# Offset of the data in an .npy v1.0 file: 10 + the little-endian header length.
npy_offset() {
	local lo hi
	read -r lo hi < <(od -A n -t u1 -j 8 -N 2 "$1")
	echo $((10 + lo + 256 * hi))
}
npy_header() { head -c "$(npy_offset "$1")" "$1" | tail -c +11; }
# npy_at FILE ROW COL WIDTH: one uint8 value.
npy_at() { od -A n -t u1 -j $(($(npy_offset "$1") + $2 * $4 + $3)) -N 1 "$1" | tr -d ' '; }

# A python3 with NumPy, or nothing (those checks then skip, visibly).
numpy_python() {
	local py
	for py in python3 /usr/bin/python3; do
		"$py" -c 'import numpy' 2>/dev/null && { echo "$py"; return 0; }
	done
	return 1
}

# points N: a record's "points" with N landmarks along a diagonal.
points() { awk -v n="$1" 'BEGIN { printf "["; for (i = 0; i < n; i++) printf "%s[%d,%d]", i ? "," : "", i % 64, i % 48; printf "]" }'; }

@test "--help and --version" {
	run -0 lm2heat --help
	[[ ${lines[0]} == "Usage: lm2heat -o DIR"* ]]
	run -0 lm2heat -h
	run -0 lm2heat --version
	[ "$output" = "lm2heat p2pcat 0.1.0" ]
}

@test "usage errors exit 2 with a message" {
	run -2 --separate-stderr lm2heat -o h --bogus samples.jsonl
	[ "${stderr_lines[0]}" = "lm2heat: unknown option '--bogus'" ]
	[ "${stderr_lines[1]}" = "Try 'lm2heat --help' for more information." ]
	run -2 --separate-stderr lm2heat samples.jsonl
	[ "${stderr_lines[0]}" = "lm2heat: -o DIR is required" ]
	run -2 --separate-stderr lm2heat -o h --sigma 0 samples.jsonl
	[ "${stderr_lines[0]}" = "lm2heat: --sigma: 0 is out of range [0.001, 10000]" ]
	run -2 --separate-stderr lm2heat -o h --sigma abc samples.jsonl
	[ "${stderr_lines[0]}" = "lm2heat: --sigma: not a number: 'abc'" ]
	run -2 --separate-stderr lm2heat -o h --points 1,x samples.jsonl
	[ "${stderr_lines[0]}" = "lm2heat: --points: not an integer: 'x'" ]
	run -2 --separate-stderr lm2heat -o h --points 1,,2 samples.jsonl
	[ "${stderr_lines[0]}" = "lm2heat: --points: expected 'all' or indices like 0,1,2, got '1,,2'" ]
	run -2 --separate-stderr lm2heat -o h --size 0 samples.jsonl
	run -2 --separate-stderr lm2heat -o h --size 3x samples.jsonl
	run -2 --separate-stderr lm2heat -o h --shard 2/2 samples.jsonl
	run -2 --separate-stderr lm2heat -o h a.jsonl b.jsonl
	[ "${stderr_lines[0]}" = "lm2heat: one input at most (FILE.jsonl or -), got 2" ]
	[ ! -e h ]
}

@test "happy path: records kept in order with heatmap added, sizes from the images" {
	run -0 --separate-stderr lm2heat -o heat samples.jsonl
	[ "$stderr" = "lm2heat: 3 written, 0 skipped" ]
	[ ${#lines[@]} -eq 3 ]
	[ "${lines[0]}" = '{"id":"cat1","image":"cat64x48.jpg","points":[[10,20],[30,5],[63,47]],"box":[0,0,64,48],"crop":{"src":"x.png","rect":[1,2,3,4]},"heatmap":"heat/cat1.npy"}' ]
	[ "${lines[1]}" = '{"id":"sq","image":"sq32.png","points":[[16.5,16.25]],"note":"unknown keys stay","heatmap":"heat/sq.npy"}' ]
	# an old "heatmap" is replaced where it stood
	[ "${lines[2]}" = '{"id":"cat2","image":"cat64x48.jpg","points":[[0,0],[12.3,40.7]],"heatmap":"heat/cat2.npy"}' ]
	[ "$(ls heat)" = "$(printf 'cat1.npy\ncat2.npy\nsq.npy')" ]
}

@test ".npy header, size and values at the landmarks" {
	run -0 lm2heat -o heat/ samples.jsonl
	[[ ${lines[0]} == *'"heatmap":"heat/cat1.npy"}' ]]
	[ "$(head -c 8 heat/cat1.npy | od -A n -t x1 | tr -d ' ')" = "934e554d50590100" ]
	[[ $(npy_header heat/cat1.npy) == "{'descr': '|u1', 'fortran_order': False, 'shape': (48, 64), }"* ]]
	[ "$(npy_header heat/cat1.npy | tail -c 1 | od -A n -c | tr -d ' ')" = '\n' ]
	[ $(($(npy_offset heat/cat1.npy) % 64)) -eq 0 ]
	[ "$(stat -c %s heat/cat1.npy)" -eq $(($(npy_offset heat/cat1.npy) + 48 * 64)) ]
	# 255 at each landmark (x = column, y = row), the Gaussian beside it
	[ "$(npy_at heat/cat1.npy 20 10 64)" = 255 ]
	[ "$(npy_at heat/cat1.npy 5 30 64)" = 255 ]
	[ "$(npy_at heat/cat1.npy 47 63 64)" = 255 ]
	[ "$(npy_at heat/cat1.npy 20 11 64)" = 225 ]     # 255 exp(-1/8)
	[ "$(npy_at heat/cat1.npy 21 11 64)" = 199 ]     # 255 exp(-2/8)
	[ "$(npy_at heat/cat1.npy 20 18 64)" = 0 ]       # 4 sigma away
	[ "$(npy_at heat/cat1.npy 0 0 64)" = 0 ]
	[[ $(npy_header heat/sq.npy) == *"'shape': (32, 32)"* ]]
	[[ $(npy_header heat/cat2.npy) == *"'shape': (48, 64)"* ]]
	[ "$(npy_at heat/cat2.npy 0 0 64)" = 255 ]
}

@test "within 1 grey level of the exact formula everywhere (NumPy)" {
	py=$(numpy_python) || skip "no python3 with NumPy"
	printf '%s\n' '{"id":"m","image":"cat64x48.jpg","points":[[10.3,20.8],[12,22],[-3,10],[63.5,47.5],[40.25,0]]}' >in.jsonl
	run -0 lm2heat -o heat in.jsonl
	run -0 "$py" check_npy.py heat/m.npy 2 10.3,20.8 12,22 -3,10 63.5,47.5 40.25,0
	[[ $output == "48 64 0."* ]]
	run -0 lm2heat -o heat -s 5.5 in.jsonl
	run -0 "$py" check_npy.py heat/m.npy 5.5 10.3,20.8 12,22 -3,10 63.5,47.5 40.25,0
	run -0 lm2heat -o heat -s 0.7 samples.jsonl
	run -0 "$py" check_npy.py heat/sq.npy 0.7 16.5,16.25
	run -0 "$py" -c 'import numpy as n; a = n.load("heat/cat1.npy"); print(a[20, 10], a.max(), a.dtype)'
	[ "$output" = "255 255 uint8" ]
}

@test "--size sets the shape without opening the image" {
	printf '%s\n' '{"id":"a","image":"not/there.jpg","points":[[3,2]]}' '{"id":"b","points":[[1,1]]}' >in.jsonl
	run -0 --separate-stderr lm2heat -o heat --size 8x6 in.jsonl
	[ "$stderr" = "lm2heat: 2 written, 0 skipped" ]
	[[ $(npy_header heat/a.npy) == *"'shape': (6, 8)"* ]]
	[ "$(npy_at heat/a.npy 2 3 8)" = 255 ]
	run -0 lm2heat -o heat --size 16 in.jsonl
	[[ $(npy_header heat/b.npy) == *"'shape': (16, 16)"* ]]
}

@test "sizes from PNG and JPEG headers (progressive, after a long APP1 segment), else libvips" {
	printf '\377\330\377\340junk' >fake.jpg
	# a PNG whose first chunk claims 1.5 GB: refused from its length
	printf '\211PNG\r\n\032\n\133\000\000\003tEXtkey\000value' >huge-text.png
	for f in wide150x90.png wide150x90-exif.jpg wide150x90-progressive.jpg fake.jpg cat64x48.jpg wide30x20.webp \
	         huge-text.png; do
		echo "{\"id\":\"${f//./_}\",\"image\":\"$f\",\"points\":[[149,89]]}"
	done >in.jsonl
	run -0 --separate-stderr lm2heat -o heat in.jsonl
	[ "${stderr_lines[0]}" = "lm2heat: in.jsonl:4: fake.jpg: not an image libvips can read" ]
	[ "${stderr_lines[1]}" = "lm2heat: in.jsonl:7: huge-text.png: corrupt PNG: a tEXt chunk claims 1526726659 bytes, 5 are left" ]
	[ "${stderr_lines[2]}" = "lm2heat: 5 written, 2 skipped" ]
	for f in wide150x90_png wide150x90-exif_jpg wide150x90-progressive_jpg; do
		[[ $(npy_header heat/$f.npy) == *"'shape': (90, 150)"* ]]
		[ "$(npy_at heat/$f.npy 89 149 150)" = 255 ]
	done
	[[ $(npy_header heat/cat64x48_jpg.npy) == *"'shape': (48, 64)"* ]]
	[[ $(npy_header heat/wide30x20_webp.npy) == *"'shape': (20, 30)"* ]]
}

@test "--points picks landmarks by index" {
	run -0 lm2heat -o heat --points 2,0 samples.jsonl
	[ "$(npy_at heat/cat1.npy 20 10 64)" = 255 ]
	[ "$(npy_at heat/cat1.npy 47 63 64)" = 255 ]
	[ "$(npy_at heat/cat1.npy 5 30 64)" = 0 ]
	run -0 --separate-stderr lm2heat -o heat2 --points 1 samples.jsonl
	[ "${stderr_lines[0]}" = 'lm2heat: samples.jsonl:2: "points" has 1 points; --points asks for index 1' ]
	[ "${stderr_lines[1]}" = "lm2heat: 2 written, 1 skipped" ]
	[ "$(npy_at heat2/cat1.npy 5 30 64)" = 255 ]
	[ "$(npy_at heat2/cat1.npy 20 10 64)" = 0 ]
}

@test "any number of points: 1, 47, 48" {
	for n in 1 47 48; do
		echo "{\"id\":\"p$n\",\"image\":\"cat64x48.jpg\",\"points\":$(points $n)}"
	done >in.jsonl
	run -0 --separate-stderr lm2heat -o heat in.jsonl
	[ "$stderr" = "lm2heat: 3 written, 0 skipped" ]
	[ "$(npy_at heat/p47.npy 46 46 64)" = 255 ]
	[ "$(npy_at heat/p47.npy 47 47 64)" != 255 ]
	[ "$(npy_at heat/p48.npy 47 47 64)" = 255 ]
}

@test "bad records: one line each with FILE:LINE, skipped, counted" {
	{
		echo '{"id":"ok1","image":"cat64x48.jpg","points":[[1,1]]}'
		echo '{"id":"x","image":"cat64x48.jpg","points":[[1,1]]'
		echo '{"id":"nan","image":"cat64x48.jpg","points":[[NaN,1]]}'
		echo '{"id":"inf","image":"cat64x48.jpg","points":[[1e999,1]]}'
		echo '{"id":"str","image":"cat64x48.jpg","points":[[1,"2"]]}'
		echo '{"id":"three","image":"cat64x48.jpg","points":[[1,2,3]]}'
		echo '{"id":"none","image":"cat64x48.jpg"}'
		echo '{"id":"empty","image":"cat64x48.jpg","points":[]}'
		echo '{"image":"cat64x48.jpg","points":[[1,1]]}'
		echo '{"id":"../up","image":"cat64x48.jpg","points":[[1,1]]}'
		echo '{"id":"gone","image":"missing.jpg","points":[[1,1]]}'
		echo '{"id":"broken","image":"broken.jpg","points":[[1,1]]}'
		echo '{"id":"noimage","points":[[1,1]]}'
		echo '[1,2]'
		echo ''
		echo '{"id":"ok1","image":"cat64x48.jpg","points":[[2,2]]}'
		echo '{"id":"ok2","image":"sq32.png","points":[[2,2]]}'
	} >in.jsonl
	run -0 --separate-stderr lm2heat -o heat in.jsonl
	[ "${#lines[@]}" -eq 2 ]
	[[ ${lines[0]} == '{"id":"ok1",'* ]]
	[[ ${lines[1]} == '{"id":"ok2",'* ]]
	diff -u - <(printf '%s\n' "${stderr_lines[@]}") <<'EOF'
lm2heat: in.jsonl:2: not valid JSON
lm2heat: in.jsonl:3: not valid JSON
lm2heat: in.jsonl:4: "points"[0] is not a pair of finite numbers
lm2heat: in.jsonl:5: "points"[0] is not a pair of finite numbers
lm2heat: in.jsonl:6: "points"[0] is not a pair of finite numbers
lm2heat: in.jsonl:7: missing "points"
lm2heat: in.jsonl:8: "points" has 0 points
lm2heat: in.jsonl:9: missing "id"
lm2heat: in.jsonl:10: "id" '../up' begins with '.'
lm2heat: in.jsonl:11: missing.jpg: No such file or directory
lm2heat: in.jsonl:12: broken.jpg: not an image libvips can read
lm2heat: in.jsonl:13: missing "image"
lm2heat: in.jsonl:14: not a JSON object
lm2heat: in.jsonl:16: duplicate id 'ok1' (first on line 1)
lm2heat: 2 written, 14 skipped
EOF
	[ "$(ls heat)" = "$(printf 'ok1.npy\nok2.npy')" ]
	# the first ok1 kept its heatmap (the duplicate did not overwrite it)
	[ "$(npy_at heat/ok1.npy 1 1 64)" = 255 ]
}

@test "--strict stops at the first bad record" {
	printf '%s\n' '{"id":"a","image":"cat64x48.jpg","points":[[1,1]]}' '{"id":"b","points":[[1,1]]}' \
		'{"id":"c","image":"cat64x48.jpg","points":[[1,1]]}' >in.jsonl
	run -1 --separate-stderr lm2heat -o heat --strict in.jsonl
	[ "$stderr" = 'lm2heat: in.jsonl:2: missing "image"' ]
	[ "${#lines[@]}" -eq 1 ]
	[[ ${lines[0]} == '{"id":"a",'* ]]
	run -0 --separate-stderr lm2heat -o heat --strict samples.jsonl
}

@test "reads stdin when the file is - or not given" {
	run -0 --separate-stderr lm2heat -o heat samples.jsonl
	want=$output
	run -0 --separate-stderr bash -c 'lm2heat -o heat - < samples.jsonl'
	[ "$output" = "$want" ]
	run -0 --separate-stderr bash -c 'cat samples.jsonl | lm2heat -o heat'
	[ "$output" = "$want" ]
	run -0 --separate-stderr bash -c 'echo "{" | lm2heat -o heat'
	[ "$stderr" = "$(printf 'lm2heat: stdin:1: not valid JSON\nlm2heat: 0 written, 1 skipped')" ]
}

@test "empty input: nothing written, exit 0" {
	: >empty.jsonl
	run -0 --separate-stderr lm2heat -o heat empty.jsonl
	[ -z "$output" ]
	[ "$stderr" = "lm2heat: 0 written, 0 skipped" ]
	run -1 --separate-stderr lm2heat -o heat nothere.jsonl
	[ "$stderr" = "lm2heat: nothere.jsonl: cannot open: No such file or directory" ]
}

@test "deterministic, and no temporary files left" {
	for i in $(seq 0 299); do
		echo "{\"id\":\"s$i\",\"image\":\"cat64x48.jpg\",\"points\":[[$((i % 64)).5,$((i % 48))],[3,4]]}"
	done >many.jsonl
	run -0 --separate-stderr lm2heat -o h1 many.jsonl
	out1=$output
	OMP_NUM_THREADS=1 run -0 --separate-stderr lm2heat -o h2 many.jsonl
	[ "${output//h2\//h1/}" = "$out1" ]
	diff -r h1 h2
	[ "$(ls h1 | wc -l)" -eq 300 ]
	[ -z "$(ls -A h1 | grep -v '\.npy$')" ]
	[ "$(head -1 <<<"$out1")" = '{"id":"s0","image":"cat64x48.jpg","points":[[0.5,0],[3,4]],"heatmap":"h1/s0.npy"}' ]
	[ "$(tail -1 <<<"$out1" | cut -c1-12)" = '{"id":"s299"' ]
}

@test "--shard I/N splits the records between tasks" {
	for i in $(seq 0 9); do echo "{\"id\":\"s$i\",\"points\":[[1,1]]}"; done >ten.jsonl
	run -0 --separate-stderr lm2heat -o h --size 4 --shard 1/3 ten.jsonl
	[ "$(printf '%s\n' "${lines[@]}" | cut -d'"' -f4 | tr '\n' ' ')" = "s1 s4 s7 " ]
	[ "$(ls h | tr '\n' ' ')" = "s1.npy s4.npy s7.npy " ]
	SLURM_ARRAY_TASK_ID=0 SLURM_ARRAY_TASK_COUNT=4 run -0 --separate-stderr lm2heat -o h --size 4 ten.jsonl
	[ "$(printf '%s\n' "${lines[@]}" | cut -d'"' -f4 | tr '\n' ' ')" = "s0 s4 s8 " ]
	# the flag wins over the environment
	SLURM_ARRAY_TASK_ID=0 SLURM_ARRAY_TASK_COUNT=4 run -0 --separate-stderr lm2heat -o h --size 4 --shard 0/1 ten.jsonl
	[ "${#lines[@]}" -eq 10 ]
}

@test "-o - writes the heatmaps to stdout" {
	echo '{"points":[[3,2]]}' >one.jsonl
	lm2heat -o - --size 8x6 one.jsonl >one.npy
	[[ $(npy_header one.npy) == "{'descr': '|u1', 'fortran_order': False, 'shape': (6, 8), }"* ]]
	[ "$(npy_at one.npy 2 3 8)" = 255 ]
	[ "$(stat -c %s one.npy)" -eq $(($(npy_offset one.npy) + 48)) ]
}
