#!/usr/bin/env bats
# catflw-synth: the CatFLW layout, label contents, determinism, usage errors.

load helper

# One small set shared by the read-only tests.
setup_file() {
	export SET=$BATS_FILE_TMPDIR/set
	catflw-synth -q -o "$SET" -n 12 -s 64 --seed 7
}

# png_size FILE: "W H" from the PNG header
png_size() {
	od -An -tu1 -j16 -N8 "$1" | awk '{ print $1*16777216 + $2*65536 + $3*256 + $4, $5*16777216 + $6*65536 + $7*256 + $8 }'
}

# numbers FILE: every number in a label file, one per line
numbers() {
	grep -oE -- '-?[0-9]+(\.[0-9]+)?' "$1"
}

@test "writes one image and one label file per sample, sortable names" {
	run -0 ls "$SET/images"
	[ "${#lines[@]}" -eq 12 ]
	[ "${lines[0]}" = 00000000_000.png ]
	[ "${lines[11]}" = 00000011_000.png ]
	run -0 ls "$SET/labels"
	[ "${#lines[@]}" -eq 12 ]
	[ "${lines[0]}" = 00000000_000.json ]
	# no temp files left behind
	run -0 find "$SET" -name '.*'
	[ -z "$output" ] || [ "$output" = "$SET" ]
}

@test "images are PNGs of the requested size" {
	for f in "$SET"/images/*.png; do
		[ "$(head -c 8 "$f" | od -An -c | tr -d ' ')" = '211PNG\r\n032\n' ]
		[ "$(png_size "$f")" = "64 64" ] || fail "$f: $(png_size "$f")"
	done
	catflw-synth -q -o big -n 1 -s 100
	[ "$(png_size big/images/00000000_000.png)" = "100 100" ]
}

@test "labels: 48 [x, y] points and a 4-number box, in CatFLW keys" {
	for f in "$SET"/labels/*.json; do
		[ "$(grep -oE '\[-?[0-9.]+, -?[0-9.]+\]' "$f" | wc -l)" -eq 48 ] || fail "$f: not 48 points"
		grep -qE '^\{"labels": \[\[' "$f" || fail "$f: no labels key first"
		grep -qE '"bounding_boxes": \[-?[0-9.]+, -?[0-9.]+, -?[0-9.]+, -?[0-9.]+\]\}$' "$f" ||
			fail "$f: no 4-number box"
		[ "$(numbers "$f" | wc -l)" -eq 100 ] || fail "$f: stray numbers"
	done
}

@test "points lie on or near the image; the box is inside it and ordered" {
	for f in "$SET"/labels/*.json; do
		numbers "$f" | awk -v f="$f" '
			NR <= 96 { if ($1 < -16 || $1 > 80) { print f ": point coordinate " $1; bad = 1 }
			           if ($1 >= 0 && $1 < 64) inside++ }
			NR > 96 { b[NR - 96] = $1; if ($1 < 0 || $1 > 63) { print f ": box " $1; bad = 1 } }
			END { if (b[1] >= b[3] || b[2] >= b[4]) { print f ": box not ordered"; bad = 1 }
			      if (inside < 96 * 0.75) { print f ": most points outside"; bad = 1 }
			      exit bad }' || return 1
	done
}

@test "the box holds the points that are inside the image" {
	for f in "$SET"/labels/*.json; do
		numbers "$f" | awk -v f="$f" '
			NR <= 96 { p[NR] = $1 } NR > 96 { b[NR - 96] = $1 }
			END { for (i = 1; i < 96; i += 2) {
				x = p[i]; y = p[i + 1]
				if (x < 0 || y < 0 || x > 63 || y > 63) continue
				if (x < b[1] || x > b[3] || y < b[2] || y > b[4]) { print f ": point outside box"; exit 1 } } }'
	done
}

@test "the same seed gives the same bytes, whatever the number of threads" {
	catflw-synth -q -o a -n 6 -s 64 --seed 3 -j 1
	catflw-synth -q -o b -n 6 -s 64 --seed 3 -j 2
	run -0 diff -r a b
}

@test "a different seed gives different images and labels" {
	catflw-synth -q -o a -n 3 -s 64 --seed 3
	catflw-synth -q -o b -n 3 -s 64 --seed 4
	for n in 00000000_000 00000001_000 00000002_000; do
		! cmp -s a/images/$n.png b/images/$n.png
		! cmp -s a/labels/$n.json b/labels/$n.json
	done
}

@test "each image is its own: a longer run repeats a shorter one's files" {
	catflw-synth -q -o a -n 3 -s 64 --seed 9
	catflw-synth -q -o b -n 5 -s 64 --seed 9
	for n in 00000000_000 00000001_000 00000002_000; do
		cmp a/images/$n.png b/images/$n.png
		cmp a/labels/$n.json b/labels/$n.json
	done
}

@test "--shard I/N splits the set; the shards together make the whole" {
	catflw-synth -q -o whole -n 5 -s 64 --seed 2
	catflw-synth -q -o parts -n 5 -s 64 --seed 2 --shard 0/2
	run -0 ls parts/images
	[ "$output" = "$(printf '%s\n' 00000000_000.png 00000002_000.png 00000004_000.png)" ]
	SLURM_ARRAY_TASK_ID=1 SLURM_ARRAY_TASK_COUNT=2 catflw-synth -q -o parts -n 5 -s 64 --seed 2
	run -0 diff -r whole parts
}

@test "prints a one-line summary on stderr and nothing on stdout" {
	run -0 --separate-stderr catflw-synth -o out -n 2 -s 64
	[ -z "$output" ]
	[ "$stderr" = "catflw-synth: 2 written to out" ]
	run -0 --separate-stderr catflw-synth -q -o out -n 2 -s 64
	[ -z "$output" ] && [ -z "$stderr" ]
}

@test "usage errors exit 2 with a message and a hint" {
	run -2 --separate-stderr catflw-synth -o out -n 0
	[ "$stderr" = "catflw-synth: -n: 0 is out of range [1, 99999999]
Try 'catflw-synth --help' for more information." ]
	run -2 --separate-stderr catflw-synth -o out -n ten
	[ "${stderr%%$'\n'*}" = "catflw-synth: -n: not an integer: 'ten'" ]
	run -2 --separate-stderr catflw-synth -o out -s 16
	[ "${stderr%%$'\n'*}" = "catflw-synth: -s: 16 is out of range [32, 4096]" ]
	run -2 --separate-stderr catflw-synth -o out --seed -1
	[ "${stderr%%$'\n'*}" = "catflw-synth: --seed: -1 is out of range [0, 9223372036854775807]" ]
	run -2 --separate-stderr catflw-synth -o out -j 0
	[ "${stderr%%$'\n'*}" = "catflw-synth: -j: 0 is out of range [1, 1024]" ]
	run -2 --separate-stderr catflw-synth -n 3
	[ "${stderr%%$'\n'*}" = "catflw-synth: -o DIR is required" ]
	run -2 --separate-stderr catflw-synth -o out --bogus
	[ "${stderr%%$'\n'*}" = "catflw-synth: unknown option '--bogus'" ]
	run -2 --separate-stderr catflw-synth -o out -x
	[ "${stderr%%$'\n'*}" = "catflw-synth: unknown option '-x'" ]
	run -2 --separate-stderr catflw-synth -o
	[ "${stderr%%$'\n'*}" = "catflw-synth: option '-o' needs a value" ]
	run -2 --separate-stderr catflw-synth -o out extra
	[ "${stderr%%$'\n'*}" = "catflw-synth: unexpected argument 'extra'" ]
	run -2 --separate-stderr catflw-synth -o out --shard 2/2
	[ "${stderr%%$'\n'*}" = "catflw-synth: --shard: expected I/N with 0 <= I < N, got '2/2'" ]
	[ ! -e out ]
}

@test "an output folder that cannot be made: exit 1, one line naming it" {
	touch file
	run -1 --separate-stderr catflw-synth -o file/set -n 1 -s 64
	[ "$stderr" = "catflw-synth: file/set: cannot create folder: Not a directory" ]
	[ -z "$output" ]
}

@test "a file that cannot be written: exit 1, one line naming it" {
	mkdir -p out/images/00000001_000.png
	run -1 --separate-stderr catflw-synth -q -o out -n 3 -s 64 -j 1
	[ "$stderr" = "catflw-synth: out/images/00000001_000.png: cannot write: Is a directory" ]
	# what was written is whole, and no temp file is left
	[ -z "$(find out -name '.*')" ]
}

@test "--help prints usage on stdout and exits 0" {
	run -0 --separate-stderr catflw-synth --help
	[[ ${lines[0]} == "usage: catflw-synth -o DIR "* ]]
	[ -z "$stderr" ]
	run -0 catflw-synth -h
	[[ ${lines[0]} == "usage: catflw-synth"* ]]
}

@test "--version names the program and the suite" {
	run -0 --separate-stderr catflw-synth --version
	[[ $output =~ ^catflw-synth\ p2pcat\ [0-9]+\.[0-9]+\.[0-9]+$ ]]
}
