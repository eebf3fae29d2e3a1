#!/usr/bin/env bats
# Checkpoint safety: p2p-train killed with SIGKILL at random moments, over
# and over, on a tiny run that checkpoints every step (32x32, widths 4, six
# training images). After every kill the run folder's safetensors files load
# (p2p-gen reads the checkpoint's G), the step never goes back and the log
# has only whole lines; resumed to the end, the run gives the same bytes as
# one never interrupted. P2P_KILL_SEED picks the moments (default: the
# clock; the seed is printed when the test fails).
load helper

PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

EPOCHS=200  # 3 steps each, 2 to 5 ms a step here: longer than the kills' 300 ms

setup_file() {
	export DATA=$BATS_FILE_TMPDIR/data
	$PY "$FIXTURES/p2p-train/mkdata.py" "$DATA" 32 6 2 1
	# the reference: the same run, never interrupted
	p2p-train --data "$DATA" --out "$BATS_FILE_TMPDIR/ref" --epochs $EPOCHS --batch 2 \
		--ngf 4 --ndf 4 --lambda-perc 0 --threads 1 --quiet --checkpoint-every 1
}

# the step recorded in a checkpoint's metadata, read in the shell
ckpt_step() {
	local n
	n=$(od -An -t u8 -N 8 "$1" | tr -d ' ')
	tail -c +9 "$1" | head -c "$n" | grep -oE '"step":"[0-9]+"' | head -n 1 | tr -dc 0-9
}

# every safetensors file of the run folder loads as a generator
loads() {
	local f
	for f in run/last_checkpoint.safetensors run/G_best.safetensors; do
		[ -e "$f" ] || continue
		p2p-gen -m "$f" - <"$DATA/val/A/cat0006.npy" >/dev/null 2>gen.err ||
			{ echo "$f does not load:"; cat gen.err; return 1; }
	done
}

@test "SIGKILL at 20 random moments: the checkpoint always loads; resumed, the run ends as if never killed" {
	local seed=${P2P_KILL_SEED:-$(date +%s)}
	echo "# P2P_KILL_SEED=$seed"
	RANDOM=$seed
	local kills=0 last=0 seen=0 deadline=$((SECONDS + 240)) delay rc step
	while [ $kills -lt 20 ] && [ $SECONDS -lt $deadline ]; do
		delay=$((RANDOM % 300))
		p2p-train --data "$DATA" --out run --epochs $EPOCHS --batch 2 --ngf 4 --ndf 4 \
			--lambda-perc 0 --threads 1 --quiet --checkpoint-every 1 2>>err & pid=$!
		sleep "$(printf '0.%03d' $delay)"
		kill -KILL $pid 2>/dev/null || true
		rc=0
		wait $pid 2>/dev/null || rc=$?   # (bash's "Killed" notice is noise here)
		echo "# after ${delay} ms: status $rc"
		if [ $rc -eq 0 ]; then
			# a fast machine ran to the end before the signal: start over
			rm -rf run
			last=0
			continue
		fi
		[ $rc -eq 137 ] || { echo "p2p-train failed on its own:"; cat err; return 1; }
		kills=$((kills + 1))
		if [ -e run/last_checkpoint.safetensors ]; then
			step=$(ckpt_step run/last_checkpoint.safetensors)
			echo "#   checkpoint at step $step"
			[ "$step" -ge "$last" ] || { echo "the step went back from $last to $step"; return 1; }
			last=$step
			seen=$((seen + 1))
		fi
		loads
		if [ -s run/train.jsonl ]; then
			[ "$(tail -c 1 run/train.jsonl | od -An -c | tr -d ' ')" = '\n' ]
		fi
	done
	[ $kills -ge 20 ] || { echo "only $kills kills before the run ended or time ran out"; return 1; }
	[ $seen -gt 0 ] || { echo "no kill came after a checkpoint"; return 1; }
	# no message from any of them: a kill is silent, a resume says so
	[ -z "$(grep -v '^p2p-train: resuming run/last_checkpoint.safetensors at epoch ' err)" ]
	run -0 --separate-stderr p2p-train --data "$DATA" --out run --epochs $EPOCHS --batch 2 \
		--ngf 4 --ndf 4 --lambda-perc 0 --threads 1 --quiet --checkpoint-every 1
	ref=$BATS_FILE_TMPDIR/ref
	cmp "$ref/last_checkpoint.safetensors" run/last_checkpoint.safetensors
	cmp "$ref/G_best.safetensors" run/G_best.safetensors
	cmp "$ref/D_best.safetensors" run/D_best.safetensors
	diff <(sed -E 's/,"seconds":[^,}]*//; s/,"images_per_s":[^,}]*//' "$ref/train.jsonl") \
		<(sed -E 's/,"seconds":[^,}]*//; s/,"images_per_s":[^,}]*//' run/train.jsonl)
	# what a kill leaves is a temp file beside its target, never in its place,
	# and the resumed run sweeps those away
	local stale
	stale=$(cd run && find . -name '.*' ! -name . -printf '%p\n')
	[ -z "$stale" ] || { echo "temp files left: $stale"; return 1; }
}
