#!/usr/bin/env bats
# splitset: split sizes, disjointness, independence of input order,
# determinism, the layout (links, copies, symlinks), reruns, bad records.
load helper

# A pool of 2,079 fake samples made once: img/ID.jpg holds its id, heat/ID.npy
# is a real 4 x 4 heatmap (splitset reads heatmaps, not images).
setup_file() {
	cd "$BATS_FILE_TMPDIR" || return 1
	mkdir -p img
	local i id
	for ((i = 0; i < 2079; i++)); do
		printf -v id 'c%04d' "$i"
		echo "$id" >"img/$id.jpg"
	done
	awk -v d="$BATS_FILE_TMPDIR" 'BEGIN { for (i = 0; i < 2079; i++)
		printf "{\"id\":\"c%04d\",\"image\":\"%s/img/c%04d.jpg\",\"points\":[[1,2]],\"extra\":[%d]}\n", i, d, i, i }' >crops.jsonl
	lm2heat -o "$BATS_FILE_TMPDIR/heat" --size 4 --quiet crops.jsonl >all.jsonl 2>/dev/null
}

setup() {
	export HOME=$BATS_TEST_TMPDIR
	cd "$BATS_TEST_TMPDIR" || return 1
	POOL=$BATS_FILE_TMPDIR
}

# ids ROOT SPLIT: the ids in a manifest, one a line.
ids() { cut -d'"' -f4 "$1/$2.jsonl"; }
# expect N: the summary line for N good records and the default ratios.
expect() {
	local n=$1 tr=$(($1 * 80 / 100)) va=$(($1 * 10 / 100))
	echo "splitset: $n written, 0 skipped: $tr train, $va val, $((n - tr - va)) test"
}

@test "--help and --version" {
	run -0 splitset --help
	[[ ${lines[0]} == "Usage: splitset -o ROOT"* ]]
	run -0 splitset --version
	[ "$output" = "splitset p2pcat 0.1.0" ]
}

@test "usage errors exit 2 with a message" {
	run -2 --separate-stderr splitset -o ds --bogus "$POOL/all.jsonl"
	[ "${stderr_lines[0]}" = "splitset: unknown option '--bogus'" ]
	[ "${stderr_lines[1]}" = "Try 'splitset --help' for more information." ]
	run -2 --separate-stderr splitset "$POOL/all.jsonl"
	[ "${stderr_lines[0]}" = "splitset: -o ROOT is required" ]
	run -2 --separate-stderr splitset -o ds --ratios 80,20 "$POOL/all.jsonl"
	[ "${stderr_lines[0]}" = "splitset: --ratios: expected three numbers A,B,C, got '80,20'" ]
	run -2 --separate-stderr splitset -o ds --ratios 1,2,3,4 "$POOL/all.jsonl"
	run -2 --separate-stderr splitset -o ds --ratios 0,0,0 "$POOL/all.jsonl"
	[ "${stderr_lines[0]}" = "splitset: --ratios: all three are 0" ]
	run -2 --separate-stderr splitset -o ds --ratios 80,-10,30 "$POOL/all.jsonl"
	run -2 --separate-stderr splitset -o ds --seed x "$POOL/all.jsonl"
	[ "${stderr_lines[0]}" = "splitset: --seed: not an integer: 'x'" ]
	run -2 --separate-stderr splitset -o ds --copy --symlink "$POOL/all.jsonl"
	[ "${stderr_lines[0]}" = "splitset: --copy and --symlink: choose one" ]
	run -2 --separate-stderr splitset -o ds a.jsonl b.jsonl
	[ ! -e ds ]
}

@test "2,079 samples give 1,663 / 207 / 209" {
	run -0 --separate-stderr splitset -o ds "$POOL/all.jsonl"
	[ -z "$output" ]
	[ "$stderr" = "splitset: 2079 written, 0 skipped: 1663 train, 207 val, 209 test" ]
	[ "$(wc -l <ds/train.jsonl)" -eq 1663 ]
	[ "$(wc -l <ds/val.jsonl)" -eq 207 ]
	[ "$(wc -l <ds/test.jsonl)" -eq 209 ]
	for s in train:1663 val:207 test:209; do
		[ "$(ls "ds/${s%:*}/A" | wc -l)" -eq "${s#*:}" ]
		[ "$(ls "ds/${s%:*}/B" | wc -l)" -eq "${s#*:}" ]
	done
	[ "$(ls -A ds | tr '\n' ' ')" = "test test.jsonl train train.jsonl val val.jsonl " ]
}

@test "split sizes are floor(0.8 n), floor(0.1 n) and the rest for several n" {
	for n in 1 2 9 10 11 19 100 101 999; do
		head -n "$n" "$POOL/all.jsonl" >in.jsonl
		run -0 --separate-stderr splitset -o "ds$n" in.jsonl
		[ "$stderr" = "$(expect "$n")" ]
		[ $(($(wc -l <"ds$n/train.jsonl") + $(wc -l <"ds$n/val.jsonl") + $(wc -l <"ds$n/test.jsonl"))) -eq "$n" ]
	done
	[ "$(wc -l <ds10/train.jsonl) $(wc -l <ds10/val.jsonl) $(wc -l <ds10/test.jsonl)" = "8 1 1" ]
	[ "$(wc -l <ds9/train.jsonl) $(wc -l <ds9/val.jsonl) $(wc -l <ds9/test.jsonl)" = "7 0 2" ]
	[ "$(wc -l <ds1/test.jsonl)" -eq 1 ]
}

@test "--ratios" {
	head -n 100 "$POOL/all.jsonl" >in.jsonl
	run -0 --separate-stderr splitset -o ds --ratios 50,25,25 in.jsonl
	[ "$stderr" = "splitset: 100 written, 0 skipped: 50 train, 25 val, 25 test" ]
	run -0 --separate-stderr splitset -o ds --ratios 0,0,1 in.jsonl
	[ "$stderr" = "splitset: 100 written, 0 skipped: 0 train, 0 val, 100 test" ]
	[ ! -s ds/train.jsonl ]
	[ -d ds/train/A ] && [ -d ds/train/B ]
}

@test "splits are disjoint and cover every sample" {
	run -0 splitset -o ds "$POOL/all.jsonl"
	[ -z "$( (ids ds train; ids ds val; ids ds test) | sort | uniq -d)" ]
	diff <( (ids ds train; ids ds val; ids ds test) | sort) <(cut -d'"' -f4 "$POOL/all.jsonl" | sort)
	# the folders agree with the manifests
	diff <(ids ds val) <(ls ds/val/A | sed 's/\.npy$//')
	diff <(ids ds val) <(ls ds/val/B | sed 's/\.jpg$//')
}

@test "independent of input order, deterministic, and the seed matters" {
	mkdir a b c d
	(cd a && splitset -o ds "$POOL/all.jsonl" 2>/dev/null)
	tac "$POOL/all.jsonl" >rev.jsonl
	(cd b && splitset -o ds ../rev.jsonl 2>/dev/null)
	awk 'NR % 2 == 0' "$POOL/all.jsonl" >half.jsonl
	awk 'NR % 2 == 1' "$POOL/all.jsonl" >>half.jsonl
	(cd c && splitset -o ds ../half.jsonl 2>/dev/null)
	for s in train val test; do
		cmp "a/ds/$s.jsonl" "b/ds/$s.jsonl"
		cmp "a/ds/$s.jsonl" "c/ds/$s.jsonl"
	done
	diff -r a/ds b/ds
	# again: the same bytes
	(cd d && splitset -o ds "$POOL/all.jsonl" 2>/dev/null)
	diff -r a/ds d/ds
	# another seed, another split of the same sizes
	splitset -o s7 --seed 7 "$POOL/all.jsonl" 2>/dev/null
	! cmp -s a/ds/train.jsonl s7/train.jsonl
	[ "$(wc -l <s7/train.jsonl)" -eq 1663 ]
}

@test "manifests: split and new paths set, other keys kept, id order" {
	head -n 30 "$POOL/all.jsonl" >in.jsonl
	run -0 splitset -o out/ds in.jsonl
	line=$(head -1 out/ds/val.jsonl)
	id=$(cut -d'"' -f4 <<<"$line")
	n=$((10#${id#c}))
	[ "$line" = "{\"id\":\"$id\",\"image\":\"out/ds/val/B/$id.jpg\",\"points\":[[1,2]],\"extra\":[$n],\"heatmap\":\"out/ds/val/A/$id.npy\",\"split\":\"val\"}" ]
	[ -z "$(grep -v '"split":"train"' out/ds/train.jsonl)" ]
	diff <(ids out/ds train) <(ids out/ds train | sort)
	# every path in the manifests exists
	for s in train val test; do
		cut -d'"' -f8 "out/ds/$s.jsonl" | xargs ls >/dev/null
		grep -o '"heatmap":"[^"]*"' "out/ds/$s.jsonl" | cut -d'"' -f4 | xargs ls >/dev/null
	done
}

@test "hard links by default, --copy and --symlink" {
	head -n 20 "$POOL/all.jsonl" >in.jsonl
	run -0 splitset -o ds in.jsonl
	id=$(head -1 ds/train.jsonl | cut -d'"' -f4)
	[ "$(stat -c %i "ds/train/B/$id.jpg")" = "$(stat -c %i "$POOL/img/$id.jpg")" ]
	[ "$(stat -c %i "ds/train/A/$id.npy")" = "$(stat -c %i "$POOL/heat/$id.npy")" ]
	run -0 splitset -o dc --copy in.jsonl
	id=$(head -1 dc/test.jsonl | cut -d'"' -f4)
	[ "$(stat -c %i "dc/test/B/$id.jpg")" != "$(stat -c %i "$POOL/img/$id.jpg")" ]
	cmp "dc/test/B/$id.jpg" "$POOL/img/$id.jpg"
	cmp "dc/test/A/$id.npy" "$POOL/heat/$id.npy"
	[ "$(cat "dc/test/B/$id.jpg")" = "$id" ]
	run -0 splitset -o dl --symlink in.jsonl
	[ "$(readlink "dl/test/B/$id.jpg")" = "$(realpath "$POOL/img/$id.jpg")" ]
	[ "$(readlink "dl/test/A/$id.npy")" = "$(realpath "$POOL/heat/$id.npy")" ]
}

@test "hard links fall back to copies across file systems" {
	shm=/dev/shm
	[ -d "$shm" ] && [ -w "$shm" ] && [ "$(stat -c %d "$shm")" != "$(stat -c %d .)" ] ||
		skip "no second file system to try"
	dst=$(mktemp -d "$shm/splitset-test.XXXXXX")
	head -n 10 "$POOL/all.jsonl" >in.jsonl
	run -0 --separate-stderr splitset -o "$dst/ds" in.jsonl
	id=$(head -1 "$dst/ds/train.jsonl" | cut -d'"' -f4)
	cmp "$dst/ds/train/B/$id.jpg" "$POOL/img/$id.jpg"
	[ "$(stat -c %h "$dst/ds/train/B/$id.jpg")" -eq 1 ]
	rm -rf "$dst"
}

@test "the photo keeps its extension" {
	cp "$FIXTURES/lm2heat/sq32.png" p.png
	echo '{"id":"p","image":"p.png","points":[[1,1]]}' | lm2heat -o h --quiet >in.jsonl
	run -0 splitset -o ds --ratios 1,0,0 in.jsonl
	[ -f ds/train/B/p.png ]
	[ "$(cut -d'"' -f8 ds/train.jsonl)" = "ds/train/B/p.png" ]
}

@test "rerunning replaces the three splits cleanly" {
	head -n 40 "$POOL/all.jsonl" >in40.jsonl
	head -n 10 "$POOL/all.jsonl" >in10.jsonl
	splitset -o ds in40.jsonl 2>/dev/null
	echo keep >ds/NOTES
	run -0 --separate-stderr splitset -o ds --seed 3 in10.jsonl
	[ "$stderr" = "$(expect 10)" ]
	[ "$(ls ds/train/A ds/val/A ds/test/A | grep -c npy)" -eq 10 ]
	[ "$(ls ds/train/B ds/val/B ds/test/B | grep -c jpg)" -eq 10 ]
	[ "$(cat ds/*.jsonl | wc -l)" -eq 10 ]
	[ "$(cat ds/NOTES)" = keep ]
	[ "$(ls -A ds | tr '\n' ' ')" = "NOTES test test.jsonl train train.jsonl val val.jsonl " ]
	# the same as a fresh run
	splitset -o fresh --seed 3 in10.jsonl 2>/dev/null
	diff <(cd ds && find train val test | sort) <(cd fresh && find train val test | sort)
}

@test "bad records: one line each with FILE:LINE, skipped, counted" {
	head -n 20 "$POOL/all.jsonl" >in.jsonl
	cp "$POOL/heat/c0001.npy" short.npy
	truncate -s 136 short.npy
	# a well-formed 1-D .npy: 4 bytes of shape (4,)
	{ printf '\223NUMPY\001\000\166\000'; printf '%-117s\n' "{'descr': '|u1', 'fortran_order': False, 'shape': (4,), }"; printf '\001\002\003\004'; } >flat.npy
	{
		echo '{"id":"b1","image":"'"$POOL"'/img/c0001.jpg"'
		echo '{"id":"b2","image":"'"$POOL"'/img/c0001.jpg"}'
		echo '{"id":"b3","image":"nothere.jpg","heatmap":"'"$POOL"'/heat/c0001.npy"}'
		echo '{"id":"b4","image":"'"$POOL"'/img/c0001.jpg","heatmap":"nothere.npy"}'
		echo '{"id":"b5","image":"'"$POOL"'/img/c0001.jpg","heatmap":"short.npy"}'
		echo '{"id":"b6","image":"'"$POOL"'/img/c0001.jpg","heatmap":"flat.npy"}'
		echo '{"id":"a/b","image":"'"$POOL"'/img/c0001.jpg","heatmap":"short.npy"}'
		echo '{"id":"b7","image":".","heatmap":"'"$POOL"'/heat/c0001.npy"}'
		sed -n 3p in.jsonl
	} >>in.jsonl
	run -0 --separate-stderr splitset -o ds in.jsonl
	[ -z "$output" ]
	diff -u - <(printf '%s\n' "${stderr_lines[@]}") <<EOF
splitset: in.jsonl:21: not valid JSON
splitset: in.jsonl:22: missing "heatmap"
splitset: in.jsonl:27: "id" 'a/b' cannot be a file name
splitset: in.jsonl:29: duplicate id 'c0002' (also on line 3); both skipped
splitset: in.jsonl:23: nothere.jpg: No such file or directory
splitset: in.jsonl:24: nothere.npy: cannot open: No such file or directory
splitset: in.jsonl:25: short.npy: truncated data (8 of 16 bytes)
splitset: in.jsonl:26: flat.npy: a heatmap has 2 dimensions, this one 1
splitset: in.jsonl:28: .: not a regular file
splitset: 19 written, 10 skipped: 15 train, 1 val, 3 test
EOF
	! grep -q c0002 ds/*.jsonl
}

@test "a truncated .npy is named as such" {
	cp "$POOL/heat/c0001.npy" short.npy
	truncate -s 100 short.npy
	echo '{"id":"t","image":"'"$POOL"'/img/c0001.jpg","heatmap":"short.npy"}' >in.jsonl
	run -1 --separate-stderr splitset -o ds in.jsonl
	[ "${stderr_lines[0]}" = "splitset: in.jsonl:1: short.npy: truncated header" ]
	[ "${stderr_lines[1]}" = "splitset: in.jsonl: no samples to split (1 skipped); ds left as it was" ]
	[ ! -e ds ]
}

@test "--strict stops at the first bad record and leaves ROOT as it was" {
	head -n 20 "$POOL/all.jsonl" >in.jsonl
	splitset -o ds in.jsonl 2>/dev/null
	before=$(cd ds && find . -type f | sort && cat train.jsonl)
	echo '{"id":"zz","image":"nothere.jpg","heatmap":"nothere.npy"}' >>in.jsonl
	run -1 --separate-stderr splitset -o ds --seed 5 --strict in.jsonl
	[ "$stderr" = "splitset: in.jsonl:21: nothere.jpg: No such file or directory" ]
	[ "$(cd ds && find . -type f | sort && cat train.jsonl)" = "$before" ]
	[ -z "$(ls -A ds | grep splitset)" ]
}

@test "empty input is an error and touches nothing" {
	: >empty.jsonl
	run -1 --separate-stderr splitset -o ds empty.jsonl
	[ "$stderr" = "splitset: empty.jsonl: no samples to split (0 skipped); ds left as it was" ]
	[ ! -e ds ]
	run -1 --separate-stderr splitset -o ds nothere.jsonl
	[ "$stderr" = "splitset: nothere.jsonl: cannot open: No such file or directory" ]
}

@test "reads stdin when the file is - or not given" {
	head -n 50 "$POOL/all.jsonl" >in.jsonl
	splitset -o a in.jsonl 2>/dev/null
	splitset -o b - <in.jsonl 2>/dev/null
	splitset -o c <in.jsonl 2>/dev/null
	diff <(sed 's#"a/#"X/#g' a/train.jsonl) <(sed 's#"b/#"X/#g' b/train.jsonl)
	diff <(sed 's#"a/#"X/#g' a/test.jsonl) <(sed 's#"c/#"X/#g' c/test.jsonl)
}
