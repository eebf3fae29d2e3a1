#!/usr/bin/env bats
# p2p-metrics: known values (scikit-image's numbers in the fixtures), the
# output format, and every bad input: missing partners, mismatched sizes,
# unreadable files, empty folders, usage errors.
load helper

F=$FIXTURES/p2p-metrics

# copy the fixture folders into the scratch folder, to spoil them
fixture_copy() {
	cp -r "$F/pred" "$F/truth" .
}

@test "--help and --version" {
	run -0 p2p-metrics --help
	[[ ${lines[0]} == "Usage: p2p-metrics "* ]]
	run -0 p2p-metrics -h
	[[ ${lines[0]} == "Usage: p2p-metrics "* ]]
	run -0 p2p-metrics --version
	[[ $output =~ ^p2p-metrics\ p2pcat\ [0-9]+\.[0-9]+\.[0-9]+$ ]]
}

@test "usage errors exit 2" {
	run -2 --separate-stderr p2p-metrics "$F/pred"
	[ "${stderr_lines[0]}" = "p2p-metrics: expected two folders, PRED_DIR and TRUTH_DIR (got 1 argument)" ]
	[ "${stderr_lines[1]}" = "Try 'p2p-metrics --help' for more information." ]
	[ -z "$output" ]
	run -2 --separate-stderr p2p-metrics
	[ "${stderr_lines[0]}" = "p2p-metrics: expected two folders, PRED_DIR and TRUTH_DIR (got 0 arguments)" ]
	run -2 --separate-stderr p2p-metrics a b c
	[ "${stderr_lines[0]}" = "p2p-metrics: expected two folders, PRED_DIR and TRUTH_DIR (got 3 arguments)" ]
	run -2 --separate-stderr p2p-metrics --bogus "$F/pred" "$F/truth"
	[ "${stderr_lines[0]}" = "p2p-metrics: unknown option '--bogus'" ]
	run -2 --separate-stderr p2p-metrics -x "$F/pred" "$F/truth"
	[ "${stderr_lines[0]}" = "p2p-metrics: unknown option '-x'" ]
}

@test "identical folders: L1 0, PSNR at its 100 dB cap, SSIM 1" {
	run -0 --separate-stderr p2p-metrics "$F/pred" "$F/pred"
	[ "$output" = '{"count":3,"l1":0.000000,"psnr":100.0000,"ssim":1.000000,"skipped":0}' ]
	[ "$stderr" = "p2p-metrics: 3 scored, 0 skipped" ]
}

@test "scikit-image's numbers, per image and averaged; stems match across extensions" {
	# expected.txt holds scikit-image's values (expected.py files)
	run -0 --separate-stderr p2p-metrics --per-image "$F/pred" "$F/truth"
	[ "${#lines[@]}" -eq 4 ]
	[ "${lines[0]}" = '{"id":"cat1","l1":0.078462,"psnr":26.8293,"ssim":0.880906}' ]
	[ "${lines[1]}" = '{"id":"cat2","l1":0.021524,"psnr":38.1037,"ssim":0.999029}' ]
	[ "${lines[2]}" = '{"id":"cat3","l1":0.161747,"psnr":13.7225,"ssim":0.591175}' ]
	[ "${lines[3]}" = '{"count":3,"l1":0.087244,"psnr":26.2185,"ssim":0.823703,"skipped":0}' ]
	# the same numbers as the reference file, to the places printed
	while read -r id l1 psnr ssim; do
		[ "$id" = mean ] && want=${lines[3]} || want=$(printf '%s\n' "${lines[@]}" | grep "\"$id\"")
		[[ $want == *"\"l1\":$(printf %.6f "$l1"),"* ]]
		[[ $want == *"\"psnr\":$(printf %.4f "$psnr"),"* ]]
		[[ $want == *"\"ssim\":$(printf %.6f "$ssim")"[,}]* ]]
	done <"$F/expected.txt"
}

@test "a constant offset of 10 grey levels gives 28.13 dB" {
	mkdir a b
	cp "$F/offset/dark.png" a/x.png
	cp "$F/offset/light.png" b/x.png
	run -0 --separate-stderr p2p-metrics --per-image a b
	[[ ${lines[0]} == '{"id":"x","l1":0.078431,"psnr":28.1308,'* ]]
	# the same the other way round
	run -0 --separate-stderr p2p-metrics b a
	[[ $output == '{"count":1,"l1":0.078431,"psnr":28.1308,'* ]]
}

@test "output is the same bytes with one thread or two" {
	run -0 --separate-stderr env OMP_NUM_THREADS=1 p2p-metrics --per-image "$F/pred" "$F/truth"
	one=$output
	run -0 --separate-stderr env OMP_NUM_THREADS=2 p2p-metrics --per-image "$F/pred" "$F/truth"
	[ "$output" = "$one" ]
}

@test "missing partners on either side: named, skipped, counted" {
	fixture_copy
	rm truth/cat2.png
	cp pred/cat1.png truth/cat9.png
	run -0 --separate-stderr p2p-metrics pred truth
	[[ $output == '{"count":2,'*'"skipped":2}' ]]
	[ "${stderr_lines[0]}" = "p2p-metrics: pred/cat2.png: no partner in truth" ]
	[ "${stderr_lines[1]}" = "p2p-metrics: truth/cat9.png: no partner in pred" ]
	[ "${stderr_lines[2]}" = "p2p-metrics: 2 scored, 2 skipped" ]
	[ "${#stderr_lines[@]}" -eq 3 ]
}

@test "--strict: the first bad stem is fatal, nothing on stdout" {
	fixture_copy
	rm truth/cat2.png
	run -1 --separate-stderr p2p-metrics --strict --per-image pred truth
	[ -z "$output" ]
	[ "$stderr" = "p2p-metrics: pred/cat2.png: no partner in truth" ]
	fixture_copy
	echo 'not a picture' >pred/cat1.png
	run -1 --separate-stderr p2p-metrics --strict pred truth
	[ -z "$output" ]
	[[ $stderr == "p2p-metrics: pred/cat1.png: cannot read image"* ]]
	[ "${#stderr_lines[@]}" -eq 1 ]
}

@test "mismatched sizes: named, skipped" {
	fixture_copy
	cp "$F/pred/cat3.png" truth/cat1.png
	run -0 --separate-stderr p2p-metrics pred truth
	[ "${stderr_lines[0]}" = "p2p-metrics: pred/cat1.png: 40x32, but truth/cat1.png is 24x24" ]
	[ "${stderr_lines[1]}" = "p2p-metrics: 2 scored, 1 skipped" ]
	[[ $output == '{"count":2,'*'"skipped":1}' ]]
}

@test "unreadable files: named, skipped" {
	fixture_copy
	echo 'not a picture' >truth/cat2.png
	: >pred/cat3.png
	run -0 --separate-stderr p2p-metrics --per-image pred truth
	[[ ${stderr_lines[0]} == "p2p-metrics: truth/cat2.png: cannot read image"* ]]
	[[ ${stderr_lines[1]} == "p2p-metrics: pred/cat3.png: cannot read image"* ]]
	[ "${stderr_lines[2]}" = "p2p-metrics: 1 scored, 2 skipped" ]
	[ "${lines[0]}" = '{"id":"cat1","l1":0.078462,"psnr":26.8293,"ssim":0.880906}' ]
	[ "${lines[1]}" = '{"count":1,"l1":0.078462,"psnr":26.8293,"ssim":0.880906,"skipped":2}' ]
}

@test "two files of one stem, images too small for SSIM: named, skipped" {
	fixture_copy
	cp pred/cat1.png pred/cat1.jpg
	mkdir small
	cp "$F/tiny.png" small/cat1.png
	cp "$F/tiny.png" pred/cat3.png
	cp "$F/tiny.png" truth/cat3.tif
	run -0 --separate-stderr p2p-metrics pred truth
	[ "${stderr_lines[0]}" = "p2p-metrics: pred/cat1.png: pred/cat1.jpg has the same stem" ]
	[ "${stderr_lines[1]}" = "p2p-metrics: pred/cat3.png: 8x8 is too small for SSIM (at least 11x11)" ]
	[ "${stderr_lines[2]}" = "p2p-metrics: 1 scored, 2 skipped" ]
}

@test "hidden files and sub-folders are left out; trailing slashes are fine" {
	fixture_copy
	echo junk >pred/.DS_Store
	mkdir truth/sub
	run -0 --separate-stderr p2p-metrics pred/ truth/
	[ "$output" = '{"count":3,"l1":0.087244,"psnr":26.2185,"ssim":0.823703,"skipped":0}' ]
	[ "$stderr" = "p2p-metrics: 3 scored, 0 skipped" ]
}

@test "empty or missing folders, nothing to score: errors" {
	mkdir empty
	run -1 --separate-stderr p2p-metrics empty "$F/truth"
	[ -z "$output" ]
	[ "$stderr" = "p2p-metrics: empty: no files to score" ]
	run -1 --separate-stderr p2p-metrics "$F/pred" nowhere
	[ "$stderr" = "p2p-metrics: nowhere: No such file or directory" ]
	run -1 --separate-stderr p2p-metrics "$F/pred" "$F/tiny.png"
	[ "$stderr" = "p2p-metrics: $F/tiny.png: Not a directory" ]
	mkdir other
	cp "$F/tiny.png" other/zzz.png
	run -1 --separate-stderr p2p-metrics "$F/pred" other
	[ -z "$output" ]
	[ "${stderr_lines[3]}" = "p2p-metrics: other/zzz.png: no partner in $F/pred" ]
	[ "${stderr_lines[4]}" = "p2p-metrics: no image pair could be scored (4 skipped)" ]
}

@test "--progress draws on stderr, --quiet does not" {
	run -0 --separate-stderr p2p-metrics --progress "$F/pred" "$F/truth"
	[[ $stderr == *"scoring"* ]]
	[[ $output == '{"count":3,'* ]]
	run -0 --separate-stderr p2p-metrics --quiet "$F/pred" "$F/truth"
	[ "$stderr" = "p2p-metrics: 3 scored, 0 skipped" ]
}
