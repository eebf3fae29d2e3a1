#!/usr/bin/env bats
# catflw-crop: crops read back (JPEG size, points in crop space against the
# provenance rectangle, the marked landmark found in the pixels), every kind
# of input, determinism, shards, and each bad input with its exact message.
load helper

setup() {
	export HOME=$BATS_TEST_TMPDIR
	cd "$BATS_TEST_TMPDIR" || return 1
	cp -r "$FIXTURES/catflw-crop" fx
}

# jpeg_size FILE: "WIDTH HEIGHT" from the frame header (SOF0..SOF3).
jpeg_size() {
	od -A n -t u1 -v "$1" | awk '
		{ for (k = 1; k <= NF; k++) b[n++] = $k }
		END {
			if (b[0] != 255 || b[1] != 216) exit 1
			for (i = 2; i + 8 < n; ) {
				if (b[i] != 255) exit 1
				m = b[i + 1]
				if (m >= 192 && m <= 195) { print b[i + 7] * 256 + b[i + 8], b[i + 5] * 256 + b[i + 6]; exit 0 }
				i += 2 + b[i + 2] * 256 + b[i + 3]
			}
			exit 1
		}'
}

# json_array LINE KEY: the inside of a flat array value, e.g. "17,21,58".
json_array() { sed -E "s/.*\"$2\":\[([^]]*)\].*/\1/" <<<"$1"; }
# json_points LINE: one "x y" a line.
json_points() { sed -E 's/.*"points":\[\[(.*)\]\],"box".*/\1/' <<<"$1" | sed 's/\],\[/\n/g' | tr ',' ' '; }
# label_points FILE.json: a label file's points, one "x y" a line.
label_points() { sed -E 's/.*"labels": *\[\[(.*)\]\].*/\1/' "$1" | sed -E 's/\], *\[/\n/g' | tr -d ' ' | tr ',' ' '; }
label_box() { sed -E 's/.*"bounding_boxes": *\[([^]]*)\].*/\1/' "$1" | tr -d ' '; }

# check_mapping LINE LABEL_POINTS BOX SIZE: every point, and the box, is
# (p - (x0, y0) + 0.5) * SIZE / side - 0.5 for the line's "crop" [x0, y0, side]
# (pixel centres on integer coordinates).
check_mapping() {
	local crop
	crop=$(json_array "$1" crop)
	paste -d ' ' <(json_points "$1") <(echo "$2") | awk -v crop="$crop" -v size="$4" -v box="$3" \
		-v got="$(json_array "$1" box)" '
		function bad(what) { print "mismatch: " what > "/dev/stderr"; err = 1 }
		BEGIN { split(crop, c, ","); k = size / c[3] }
		{
			if ((($1 - (($3 - c[1] + 0.5) * k - 0.5)) ^ 2) > 1e-6 || (($2 - (($4 - c[2] + 0.5) * k - 0.5)) ^ 2) > 1e-6) bad($0)
			n++
		}
		END {
			split(box, b, ","); split(got, g, ",")
			for (i = 1; i <= 4; i++)
				if (((g[i] - ((b[i] - c[2 - i % 2] + 0.5) * k - 0.5)) ^ 2) > 1e-6) bad("box " i)
			if (n == 0) bad("no points")
			exit err
		}'
}

# pixel FILE X Y: the red value there, through libvips' command line tool.
pixel() { vips getpoint "$1" "$2" "$3" | awk '{ printf "%d", $1 }'; }

@test "--help and --version" {
	run -0 catflw-crop --help
	[[ ${lines[0]} == "Usage: catflw-crop -o DIR"* ]]
	run -0 catflw-crop -h
	run -0 catflw-crop --version
	[ "$output" = "catflw-crop p2pcat 0.1.0" ]
}

@test "usage errors exit 2 with a message, before any work" {
	run -2 --separate-stderr catflw-crop -o out --bogus fx/good
	[ "${stderr_lines[0]}" = "catflw-crop: unknown option '--bogus'" ]
	[ "${stderr_lines[1]}" = "Try 'catflw-crop --help' for more information." ]
	run -2 --separate-stderr catflw-crop fx/good
	[ "${stderr_lines[0]}" = "catflw-crop: -o DIR is required: where should the crops go?" ]
	run -2 --separate-stderr catflw-crop -o out
	[ "${stderr_lines[0]}" = "catflw-crop: no input: give a CatFLW folder, label files or .cat files" ]
	run -2 --separate-stderr catflw-crop fx/good -o
	[ "${stderr_lines[0]}" = "catflw-crop: option '-o' needs a value" ]
	run -2 --separate-stderr catflw-crop -o out -s 4 fx/good
	[ "${stderr_lines[0]}" = "catflw-crop: --size: 4 is out of range [8, 2048]" ]
	run -2 --separate-stderr catflw-crop -o out --expand x fx/good
	[ "${stderr_lines[0]}" = "catflw-crop: --expand: not a number: 'x'" ]
	run -2 --separate-stderr catflw-crop -o out --min-coverage 1.5 fx/good
	[ "${stderr_lines[0]}" = "catflw-crop: --min-coverage: 1.5 is out of range [0, 1]" ]
	run -2 --separate-stderr catflw-crop -o out --max-grow 0.5 fx/good
	[ "${stderr_lines[0]}" = "catflw-crop: --max-grow: 0.5 is out of range [1, 10]" ]
	run -2 --separate-stderr catflw-crop -o out --quality 101 fx/good
	[ "${stderr_lines[0]}" = "catflw-crop: --quality: 101 is out of range [1, 100]" ]
	run -2 --separate-stderr catflw-crop -o out --pad mirror fx/good
	[ "${stderr_lines[0]}" = "catflw-crop: --pad: expected black or edge, got 'mirror'" ]
	run -2 --separate-stderr catflw-crop -o out --shard 2/2 fx/good
	[ "${stderr_lines[0]}" = "catflw-crop: --shard: expected I/N with 0 <= I < N, got '2/2'" ]
	SLURM_ARRAY_TASK_ID=x SLURM_ARRAY_TASK_COUNT=2 run -2 --separate-stderr catflw-crop -o out fx/good
	[ "${stderr_lines[0]}" = "catflw-crop: SLURM_ARRAY_TASK_ID/COUNT: not a valid shard: 'x/2'" ]
	run -2 --separate-stderr catflw-crop -o out --quiet --progress fx/good
	[ "${stderr_lines[0]}" = "catflw-crop: --quiet and --progress contradict each other" ]
	[ ! -e out ]
}

@test "a CatFLW root: one line per sample in id order, 256x256 JPEGs" {
	run -0 --separate-stderr catflw-crop -o out fx/good
	[ "$stderr" = "catflw-crop: 3 cropped, 0 skipped" ]
	[ ${#lines[@]} -eq 3 ]
	[[ ${lines[0]} == '{"id":"a","image":"out/a.jpg","points":[[226.81,129.707],[225.972,141.227],'* ]]
	[[ ${lines[0]} == *'"box":[23.776,32.603,235.638,226.81],"src":"fx/good/images/a.png","crop":[17,21,58]}' ]]
	[[ ${lines[1]} == '{"id":"b","image":"out/b.jpg",'*'"src":"fx/good/images/b.png","crop":[53,13,54]}' ]]
	[[ ${lines[2]} == '{"id":"c","image":"out/c.jpg",'*'"src":"fx/good/images/c.jpg","crop":[23,21,34]}' ]]
	[ "$(ls out)" = "$(printf 'a.jpg\nb.jpg\nc.jpg')" ]
	for f in out/*.jpg; do
		[ "$(jpeg_size "$f")" = "256 256" ]
	done
	for i in 0 1 2; do
		[ "$(json_points "${lines[$i]}" | wc -l)" -eq 48 ]
	done
}

@test "points and box in crop coordinates: (p - (x0, y0) + 0.5) * size / side - 0.5" {
	run -0 --separate-stderr catflw-crop -o out -s 96 fx/good fx/cat/d.jpg.cat
	[ ${#lines[@]} -eq 4 ]
	for i in 0 1 2; do
		id=$(sed -E 's/^\{"id":"([^"]*)".*/\1/' <<<"${lines[$i]}")
		check_mapping "${lines[$i]}" "$(label_points "fx/good/labels/$id.json")" \
			"$(label_box "fx/good/labels/$id.json")" 96
		[ "$(jpeg_size "out/$id.jpg")" = "96 96" ]
	done
	# .cat: 9 points, no box in the file: the box is the points' extent
	[[ ${lines[3]} == '{"id":"d","image":"out/d.jpg","points":'*'"src":"fx/cat/d.jpg","crop":[24,24,43]}' ]]
	cat_points=$(cut -d ' ' -f 2- fx/cat/d.jpg.cat | xargs -n 2)
	check_mapping "${lines[3]}" "$cat_points" "$(xargs -n 2 <<<"$cat_points" | awk '
		NR == 1 || $1 < x1 { x1 = $1 } NR == 1 || $2 < y1 { y1 = $2 }
		NR == 1 || $1 > x2 { x2 = $1 } NR == 1 || $2 > y2 { y2 = $2 }
		END { print x1 "," y1 "," x2 "," y2 }')" 96
	[ "$(json_points "${lines[3]}" | wc -l)" -eq 9 ]
}

@test "the landmark marked in the photo is where the line says" {
	command -v vips >/dev/null || skip "no vips command (libvips-tools)"
	run -0 --separate-stderr catflw-crop -o out fx/good/labels/a.json fx/good/labels/c.json fx/cat/d.jpg.cat
	# each fixture has a white dot on point 0 in a dull orange face on grey
	for i in 0 1 2; do
		read -r x y < <(json_points "${lines[$i]}" | head -1)
		id=$(sed -E 's/^\{"id":"([^"]*)".*/\1/' <<<"${lines[$i]}")
		xi=$(printf '%.0f' "$x") yi=$(printf '%.0f' "$y")
		[ "$(pixel "out/$id.jpg" "$xi" "$yi")" -gt 230 ] || fail "$id: no dot at $xi,$yi"
		[ "$(pixel "out/$id.jpg" $((xi - 40)) "$yi")" -lt 200 ] || fail "$id: white inside the face"
	done
}

@test "padding: black by default, the edge pixels with --pad edge" {
	command -v vips >/dev/null || skip "no vips command (libvips-tools)"
	# b's face leaves its 96x80 photo on the right and at the bottom
	catflw-crop -o black fx/good/labels/b.json
	catflw-crop -o edge --pad edge fx/good/labels/b.json
	[ "$(pixel black/b.jpg 250 128)" -lt 8 ]
	[ "$(pixel edge/b.jpg 250 128)" -gt 30 ]
	# inside the photo both are the same
	[ "$(pixel black/b.jpg 60 128)" = "$(pixel edge/b.jpg 60 128)" ]
}

@test "--expand, --min-coverage and --max-grow shape the square" {
	run -0 --separate-stderr catflw-crop -o out --expand 0.5 fx/good/labels/a.json
	[[ ${lines[0]} == *'"crop":[-2,2,96]}' ]]
	run -0 --separate-stderr catflw-crop -o out --expand 0 fx/good/labels/a.json
	[[ ${lines[0]} == *'"crop":[22,26,48]}' ]]
	# a face box far smaller than the landmarks: the square grows until
	# 90% of them are inside, unless told otherwise
	mkdir -p small/labels small/images
	cp fx/good/images/a.png small/images/
	sed -E 's/"bounding_boxes": *\[[^]]*\]/"bounding_boxes": [36, 40, 56, 60]/' fx/good/labels/a.json >small/labels/a.json
	run -0 --separate-stderr catflw-crop -o out small
	inside=$(json_points "${lines[0]}" | awk -v e="$(awk 'BEGIN { print 0.5 * 256 / 24 }')" '$1 >= -e && $1 <= 256 + e && $2 >= -e && $2 <= 256 + e' | wc -l)
	[ "$inside" -ge 44 ]
	run -0 --separate-stderr catflw-crop -o out --min-coverage 0 small
	[[ ${lines[0]} == *'"crop":[34,38,24]}' ]]
	run -0 --separate-stderr catflw-crop -o out --max-grow 1 small
	[[ ${lines[0]} == *'"crop":[34,38,24]}' ]]
	run -0 --separate-stderr catflw-crop -o out --min-coverage 1 --max-grow 10 small
	inside=$(json_points "${lines[0]}" | awk -v e="$(awk 'BEGIN { print 0.5 * 256 / 24 }')" '$1 >= -e && $1 <= 256 + e && $2 >= -e && $2 <= 256 + e' | wc -l)
	[ "$inside" -eq 48 ]
}

@test "--quality changes the bytes, not the size" {
	catflw-crop -o q95 fx/good/labels/a.json
	catflw-crop -o q20 --quality 20 fx/good/labels/a.json
	[ "$(jpeg_size q20/a.jpg)" = "256 256" ]
	[ "$(stat -c %s q20/a.jpg)" -lt "$(stat -c %s q95/a.jpg)" ]
}

@test "label files: the photo in ../images, or beside the label; paths from stdin" {
	mkdir flat
	cp fx/good/labels/c.json fx/good/images/c.jpg flat/
	run -0 --separate-stderr catflw-crop -o out fx/good/labels/b.json flat/c.json
	[[ ${lines[0]} == *'"src":"fx/good/images/b.png"'* ]]
	[[ ${lines[1]} == *'"src":"flat/c.jpg"'* ]]
	(cd fx/good/labels && catflw-crop -o ../../../here a.json) >here.jsonl
	grep -q '"src":"../images/a.png"' here.jsonl
	[ -f here/a.jpg ]
	run -0 --separate-stderr catflw-crop -o out - <<<"$(printf 'fx/good/labels/a.json\n\nfx/cat/d.jpg.cat\n')"
	[ ${#lines[@]} -eq 2 ]
	[ "$stderr" = "catflw-crop: 2 cropped, 0 skipped" ]
}

@test "deterministic: same bytes on every run and any number of threads" {
	catflw-crop -o out -j 1 fx/good fx/cat/d.jpg.cat >one.jsonl 2>/dev/null
	mkdir first && cp out/* first/
	catflw-crop -o out -j 2 fx/cat/d.jpg.cat fx/good >two.jsonl 2>/dev/null
	cmp one.jsonl two.jsonl
	for f in first/*; do cmp "$f" "out/${f#first/}"; done
	catflw-crop -o out -j 3 fx/good fx/cat/d.jpg.cat >three.jsonl 2>/dev/null
	cmp one.jsonl three.jsonl
}

@test "shards: the union is the whole, each sample and each error once" {
	inputs=(fx/good fx/cat/d.jpg.cat fx/bad/labels/p47.json fx/bad/labels/far.json nowhere.json)
	run -0 --separate-stderr catflw-crop -o all "${inputs[@]}"
	[ "$stderr" = "$(printf '%s\n' \
		"catflw-crop: fx/bad/labels/far.json: point 10 (200, 30) lies far outside the 64x64 image" \
		"catflw-crop: nowhere.json: cannot open: No such file or directory" \
		"catflw-crop: fx/bad/labels/p47.json: \"labels\" has 47 points, expected 48" \
		"catflw-crop: 4 cropped, 3 skipped")" ]
	echo "$output" >all.jsonl
	for i in 0 1 2; do
		catflw-crop -o parts --shard $i/3 "${inputs[@]}" >part$i.jsonl 2>part$i.err
	done
	cat part0.jsonl part1.jsonl part2.jsonl | sort >union.jsonl
	sed 's#"image":"parts/#"image":"all/#' union.jsonl | cmp - <(sort all.jsonl)
	[ "$(cat part*.err | grep -c ': fx\|: nowhere')" -eq 3 ]
	[ "$(cat part*.err | sed -nE 's/.* ([0-9]+) cropped, ([0-9]+) skipped/\1 \2/p' |
		awk '{ c += $1; s += $2 } END { print c, s }')" = "4 3" ]
	for f in all/*; do cmp "$f" "parts/${f#all/}"; done
	# the default comes from a Slurm job array
	SLURM_ARRAY_TASK_ID=1 SLURM_ARRAY_TASK_COUNT=3 catflw-crop -o parts "${inputs[@]}" >slurm.jsonl 2>/dev/null
	cmp slurm.jsonl part1.jsonl
}

@test "each bad sample: one line naming the file, skipped, counted" {
	mkdir -p dup/labels dup/images empty/labels nolabels dir/labels dir/images/x.png
	cp fx/good/labels/a.json dup/labels/
	cp fx/good/images/a.png dup/images/
	cp fx/good/labels/a.json dir/labels/x.json
	printf '9 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n' >fx/cat/short.jpg.cat
	cp fx/cat/d.jpg fx/cat/short.jpg
	run -0 --separate-stderr catflw-crop -o out fx/good dup/labels/a.json fx/bad/labels/*.json \
		empty nolabels dir fx/cat/short.jpg.cat fx/good/images/a.png missing.json
	[ ${#lines[@]} -eq 3 ]
	[ "$stderr" = "$(printf '%s\n' \
		"catflw-crop: dup/labels/a.json: duplicate id 'a' (also from fx/good/labels/a.json)" \
		"catflw-crop: fx/bad/images/corrupt.png: corrupt or truncated image" \
		"catflw-crop: empty/labels: no .json label files" \
		"catflw-crop: fx/bad/labels/far.json: point 10 (200, 30) lies far outside the 64x64 image" \
		"catflw-crop: fx/good/images/a.png: not a label file (.json or .cat) nor a CatFLW folder" \
		"catflw-crop: fx/bad/labels/inverted.json: \"bounding_boxes\" is inverted or empty (x1 >= x2 or y1 >= y2)" \
		"catflw-crop: missing.json: cannot open: No such file or directory" \
		"catflw-crop: fx/bad/labels/nan.json:1: not valid JSON (NaN and Infinity are not JSON numbers)" \
		"catflw-crop: fx/bad/labels/noimage.json: no image noimage.{png,jpg,jpeg,webp,tif,tiff} in fx/bad/images/ or beside it" \
		"catflw-crop: nolabels: not a CatFLW folder (no labels/ in it)" \
		"catflw-crop: fx/bad/labels/nonnum.json: point 5 is not a pair of numbers" \
		"catflw-crop: fx/bad/labels/notjson.json:2: not valid JSON" \
		"catflw-crop: fx/bad/labels/p47.json: \"labels\" has 47 points, expected 48" \
		"catflw-crop: fx/cat/short.jpg.cat: 8 points, expected 9" \
		"catflw-crop: fx/bad/images/text.png: not a PNG, JPEG, WebP or TIFF image" \
		"catflw-crop: dir/images/x.png: not a regular file" \
		"catflw-crop: 3 cropped, 16 skipped")" ]
	# nothing of the bad samples written, no temp file left
	[ "$(ls -A out)" = "$(printf 'a.jpg\nb.jpg\nc.jpg')" ]
}

@test "--strict: the first bad sample (in id order) is fatal, exit 1" {
	run -1 --separate-stderr catflw-crop -o out --strict fx/bad/labels/p47.json fx/good
	[ "$stderr" = 'catflw-crop: fx/bad/labels/p47.json: "labels" has 47 points, expected 48' ]
	[ ${#lines[@]} -eq 3 ]
	cp fx/bad/labels/nonnum.json fx/bad/labels/0.json
	run -1 --separate-stderr catflw-crop -o out2 --strict fx/good fx/bad/labels/0.json
	[ "$stderr" = "catflw-crop: fx/bad/labels/0.json: point 5 is not a pair of numbers" ]
	[ -z "$output" ]
	[ -z "$(ls -A out2 | grep tmp)" ]
	run -1 --separate-stderr catflw-crop -o out3 --strict empty-folder-that-is-not-there
	[ "$stderr" = "catflw-crop: empty-folder-that-is-not-there: cannot open: No such file or directory" ]
}

@test "progress bar with --progress, none with --quiet" {
	run -0 --separate-stderr catflw-crop -o out --progress fx/good
	[[ $stderr == *"crop ["*"3/3"* ]]
	[[ ${stderr_lines[-1]} == "catflw-crop: 3 cropped, 0 skipped" ]]
	run -0 --separate-stderr catflw-crop -o out --quiet fx/good
	[ "$stderr" = "catflw-crop: 3 cropped, 0 skipped" ]
}

@test "a reader that goes away: exit 1, no temp file left" {
	run bash -c 'set -o pipefail; catflw-crop -o out fx/good 2>err | (exec 0<&-; true)'
	[ "$status" -eq 1 ]
	[ "$(tail -1 err)" = "catflw-crop: stdout: write failed: Broken pipe" ]
	[ -z "$(ls -A out | grep tmp)" ]
}

@test "an output folder that cannot be made is a failure" {
	touch file
	run -1 --separate-stderr catflw-crop -o file/sub fx/good
	[[ $stderr == "catflw-crop: file/sub: cannot create folder: Not a directory" ]]
}

@test "crops are committed 64 at a time: all there at the end, no temp file left" {
	catflw-synth -o set -n 150 -s 160 --seed 5 >/dev/null 2>&1
	run -0 --separate-stderr catflw-crop -o out set
	[ "${#lines[@]}" -eq 150 ] && [ "$stderr" = "catflw-crop: 150 cropped, 0 skipped" ]
	[ "$(ls out | wc -l)" -eq 150 ] && [ -z "$(ls -A out | grep '^\.')" ]
	# every line names a crop that is there, in id order
	[ "$(sed -E 's/.*"image":"out\/([^"]*)".*/\1/' <<<"$output")" = "$(ls out)" ]
}

@test "a run killed halfway: every crop under its name is whole and every line's crop is there" {
	catflw-synth -o set -n 300 -s 256 --seed 3 >/dev/null 2>&1
	catflw-crop -o full --quiet set >full.jsonl
	catflw-crop -j 1 -o cut --quiet set >cut.jsonl &
	pid=$!
	for _ in $(seq 200); do [ -s cut.jsonl ] && break; sleep 0.01; done
	kill -9 "$pid"
	wait "$pid" || true
	# whole: the same bytes as an uninterrupted run's
	for f in cut/*.jpg; do cmp "$f" "full/${f#cut/}"; done
	# a line only once its crop has its name (the killed writer may have cut
	# its last line short)
	sed '$d' cut.jsonl | sed -E 's/.*"image":"([^"]*)".*/\1/' | while read -r f; do [ -f "$f" ]; done
	# nothing else but the hidden temp files of the group it was writing
	[ -z "$(ls -A cut | grep -v -E '^[0-9_]+\.jpg$|^\.[0-9_]+\.jpg\.tmp\.......$')" ]
	# the next run into the folder sweeps them once they are 10 s old (a
	# shard at work would hold a lock on its own), and nothing else
	ls -A cut | grep -q '\.tmp\.' || skip "the kill came between two groups"
	touch -d '1 minute ago' cut/.*.tmp.*
	printf 'x' >cut/.live.jpg.tmp.abcdef
	touch -d '1 minute ago' cut/.live.jpg.tmp.abcdef
	flock cut/.live.jpg.tmp.abcdef sleep 5 &
	holder=$!
	sleep 0.5
	catflw-crop -o cut --quiet set >/dev/null
	kill "$holder" 2>/dev/null || true
	[ "$(ls -A cut | grep -c '\.tmp\.')" -eq 1 ]
	[ -f cut/.live.jpg.tmp.abcdef ]
	[ "$(ls cut | wc -l)" -eq "$(ls full | wc -l)" ]
}
