#!/usr/bin/env bats
# p2p-train on a tiny data set (32x32, 8 train / 3 val images, widths 4):
# the run folder, the log, best and last checkpoints, exact resume after
# --max-steps, SIGTERM and SIGKILL, --no-resume, the NaN stop, and every bad
# input: mismatched or missing data, a checkpoint of another architecture,
# size or settings, a truncated checkpoint, --lambda-perc without --vgg16.
load helper

setup_file() {
	export DATA=$BATS_FILE_TMPDIR/data
	$PY "$FIXTURES/p2p-train/mkdata.py" "$DATA" 32 8 3 2
	$PY "$FIXTURES/p2p-train/mkvgg.py" "$BATS_FILE_TMPDIR/vgg16.safetensors"
	# the reference: 3 epochs of 3 steps (batches of 3, 3, 2), uninterrupted
	p2p-train --data "$DATA" --out "$BATS_FILE_TMPDIR/ref" --epochs 3 --batch 3 \
		--ngf 4 --ndf 4 --lambda-perc 0 --sample-every 1 --threads 1 --quiet
}

# the system's python3 starts faster than a version manager's shim
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

# the tiny configuration; extra flags after it
train() {
	p2p-train --data "$DATA" --batch 3 --ngf 4 --ndf 4 --lambda-perc 0 --threads 1 --quiet "$@"
}

REF() { echo "$BATS_FILE_TMPDIR/ref"; }

# safetensors headers read in the shell (each python3 start costs more than
# a whole tiny training run): the JSON header, a metadata value, tensor names
st_header() {
	local n
	n=$(od -An -t u8 -N 8 "$1" | tr -d ' ')
	tail -c +9 "$1" | head -c "$n"
}

# st_meta FILE KEY: a metadata value, unescaped
st_meta() {
	st_header "$1" | grep -oE "\"$2\":\"([^\"\\\\]|\\\\.)*\"" | head -n 1 |
		sed -E 's/^"[^"]*":"//; s/"$//; s/\\(.)/\1/g'
}

# st_names FILE: the tensor names, one a line, sorted
st_names() {
	st_header "$1" | grep -oE '"[^"]+":\{"dtype"' | sed -E 's/^"([^"]+)".*/\1/' | LC_ALL=C sort
}

# png_size FILE: WxH from the PNG header
png_size() {
	local x
	x=$(od -An -t x1 -j 16 -N 8 "$1" | tr -d ' \n')
	echo "$((16#${x:0:8}))x$((16#${x:8:8}))"
}

# the log without its clock fields, which differ from run to run
log_numbers() {
	sed -E 's/,"seconds":[^,}]*//; s/,"images_per_s":[^,}]*//' "$1/train.jsonl"
}

# a fingerprint of every file in a folder, to show nothing changed
tree_sum() {
	(cd "$1" && find . -type f | LC_ALL=C sort | xargs md5sum)
}

# same_run A B: the two run folders hold the same bytes (the log but its clock)
same_run() {
	cmp "$1/last_checkpoint.safetensors" "$2/last_checkpoint.safetensors"
	cmp "$1/G_best.safetensors" "$2/G_best.safetensors"
	cmp "$1/D_best.safetensors" "$2/D_best.safetensors"
	diff <(log_numbers "$1") <(log_numbers "$2")
}

@test "--help and --version" {
	run -0 p2p-train --help
	[[ ${lines[0]} == "Usage: p2p-train --data ROOT --out RUN [options]" ]]
	run -0 p2p-train -h
	[[ ${lines[0]} == "Usage: p2p-train "* ]]
	run -0 p2p-train --version
	[[ $output =~ ^p2p-train\ p2pcat\ [0-9]+\.[0-9]+\.[0-9]+$ ]]
}

@test "usage errors exit 2" {
	run -2 --separate-stderr p2p-train --out run
	[ "${stderr_lines[0]}" = "p2p-train: --data ROOT and --out RUN are both required" ]
	[ "${stderr_lines[1]}" = "Try 'p2p-train --help' for more information." ]
	run -2 --separate-stderr p2p-train --data "$DATA" --out run --batch 0
	[ "${stderr_lines[0]}" = "p2p-train: --batch: 0 is out of range [1, 65536]" ]
	run -2 --separate-stderr p2p-train --data "$DATA" --out run --lr fast
	[ "${stderr_lines[0]}" = "p2p-train: --lr: not a number: 'fast'" ]
	run -2 --separate-stderr p2p-train --data "$DATA" --out run --device tpu
	[ "${stderr_lines[0]}" = "p2p-train: --device: expected cpu or cuda, got 'tpu'" ]
	run -2 --separate-stderr p2p-train --data "$DATA" --out run --bogus
	[ "${stderr_lines[0]}" = "p2p-train: unknown option '--bogus'" ]
	run -2 --separate-stderr p2p-train --data "$DATA" --out run extra
	[ "${stderr_lines[0]}" = "p2p-train: unexpected argument 'extra'" ]
	[ ! -e run ]
}

@test "--lambda-perc without --vgg16 stops at once, saying how to get the file" {
	run -2 --separate-stderr p2p-train --data "$DATA" --out run
	[ "$stderr" = "p2p-train: --lambda-perc 2 needs VGG16 weights: pass --vgg16 FILE (write it with scripts/vgg16-export where torchvision can download its weights), or turn the perceptual loss off with --lambda-perc 0" ]
	[ ! -e run ]
	run -2 --separate-stderr p2p-train --data nowhere --out run --lambda-perc 0.5
	[[ $stderr == "p2p-train: --lambda-perc 0.5 needs VGG16 weights: "* ]]
}

@test "one epoch end to end: run folder, log, G_best with its architecture" {
	run -0 --separate-stderr p2p-train --data "$DATA" --out run --epochs 1 --batch 3 --threads 1 \
		--ngf 4 --ndf 4 --lambda-perc 0 --sample-every 1
	[ -z "$output" ]
	[[ ${stderr_lines[0]} == "p2p-train: epoch 1/1: loss_D "*" val_PSNR "*" dB (best), "*" s" ]]
	[ "${stderr_lines[1]}" = "p2p-train: 1 epochs done; best val L1 $(printf %.4f "$($PY -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["val_l1"])' run/train.jsonl)") at epoch 1: run/G_best.safetensors" ]
	[ -f run/last_checkpoint.safetensors ] && [ -f run/G_best.safetensors ] && [ -f run/D_best.safetensors ]
	[ "$(png_size run/samples/epoch_001.png)" = 96x96 ]     # 3 columns, 3 val rows
	# no temp files left behind
	[ -z "$(find run -name '.*')" ]
	# the log: one object, exactly these keys, sane values
	[ "$(wc -l < run/train.jsonl)" -eq 1 ]
	$PY - run/train.jsonl <<'EOF'
import json, math, sys
o = json.loads(open(sys.argv[1]).readline())
keys = ["epoch", "loss_d", "loss_g", "loss_g_gan", "loss_g_l1", "loss_g_perc", "val_l1",
        "val_psnr", "lr_g", "lr_d", "seconds", "images_per_s"]
assert list(o) == keys, list(o)
assert o["epoch"] == 1 and o["loss_g_perc"] == 0
assert all(isinstance(o[k], (int, float)) and math.isfinite(o[k]) for k in keys)
assert 0 < o["val_l1"] < 2 and 0 < o["val_psnr"] < 100
assert o["lr_g"] == 2e-4 and o["lr_d"] == 1e-4
assert abs(o["loss_g"] - (o["loss_g_gan"] + 150 * o["loss_g_l1"])) < 1e-9 * o["loss_g"]
EOF
	# G_best: plain names and the architecture, all a generator needs
	[ "$(st_meta run/G_best.safetensors arch)" = unet ]
	[ "$(st_meta run/G_best.safetensors size)" = 32 ]
	[ "$(st_meta run/G_best.safetensors ngf)" = 4 ]
	[ "$(st_meta run/G_best.safetensors epoch)" = 1 ]
	st_names run/G_best.safetensors | grep -qx down.0.weight
	st_names run/G_best.safetensors | grep -qx up.4.bias
	! st_names run/G_best.safetensors | grep -v -E '^(down|up)\.[0-9]+\.(weight|bias)$'
	[ "$(st_meta run/D_best.safetensors d_arch)" = patchgan ]
	st_names run/D_best.safetensors | grep -qx conv.0.weight
	# the checkpoint: G, D, both Adam states, the position and the settings
	c=run/last_checkpoint.safetensors
	[ "$(st_meta $c format)" = p2pcat-train ]
	[ "$(st_meta $c epoch)" = 1 ] && [ "$(st_meta $c batch)" = 0 ] && [ "$(st_meta $c step)" = 3 ]
	[ "$(st_meta $c G.adam.step)" = 3 ] && [ "$(st_meta $c D.adam.step)" = 3 ]
	[ "$(st_meta $c seed)" = 42 ] && [ "$(st_meta $c ngf)" = 4 ] && [ "$(st_meta $c ndf)" = 4 ]
	[[ $(st_meta $c config) == *'"batch":3,'* ]]
	for p in G. G.adam.m. G.adam.v. D. D.adam.m. D.adam.v.; do
		st_names $c | grep -qx "${p}down.0.weight" || st_names $c | grep -qx "${p}conv.0.weight"
	done
	[ "$(st_names $c | wc -l)" -eq $((3 * ($(st_names run/G_best.safetensors | wc -l) + $(st_names run/D_best.safetensors | wc -l)))) ]
}

@test "the perceptual loss, VGG16 weights from a file" {
	vgg=$BATS_FILE_TMPDIR/vgg16.safetensors
	run -0 --separate-stderr p2p-train --data "$DATA" --out run --epochs 1 --batch 3 --ngf 4 \
		--ndf 4 --threads 1 --quiet --vgg16 "$vgg"
	$PY - run/train.jsonl <<'EOF'
import json, sys
o = json.loads(open(sys.argv[1]).readline())
assert o["loss_g_perc"] > 0, o
want = o["loss_g_gan"] + 150 * o["loss_g_l1"] + 2 * o["loss_g_perc"]
assert abs(o["loss_g"] - want) < 1e-9 * want, (o["loss_g"], want)
EOF
	[[ $(st_meta run/last_checkpoint.safetensors config) == *'"lambda_perc":2,"vgg16":"'"$vgg"'"'* ]]
	# the weight changes the run
	run -0 train --out other --epochs 1 --lambda-perc 0.5 --vgg16 "$vgg"
	! cmp -s run/G_best.safetensors other/G_best.safetensors
	run -1 --separate-stderr train --out bad --epochs 1 --lambda-perc 2 --vgg16 nosuch.safetensors
	[[ $stderr == "p2p-train: nosuch.safetensors: "* ]]
	[ "${#stderr_lines[@]}" -eq 1 ]
	[ ! -e bad ]
}

@test "same seed, same bytes; another seed, other weights" {
	train --out run --epochs 3 --sample-every 1
	same_run "$(REF)" run
	cmp "$(REF)/samples/epoch_003.png" run/samples/epoch_003.png
	train --out other --epochs 1 --seed 7
	! cmp -s "$(REF)/G_best.safetensors" other/G_best.safetensors
}

@test "best and last: G_best and D_best from the epoch of the lowest val L1, last from the last" {
	r=$(REF)
	[ "$(wc -l < "$r/train.jsonl")" -eq 3 ]
	best=$($PY -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
b = min(rows, key=lambda o: o["val_l1"])
assert b["val_l1"] == float(sys.argv[2]), (b["val_l1"], sys.argv[2])
print(b["epoch"])' "$r/train.jsonl" "$(st_meta "$r/G_best.safetensors" val_l1)")
	[ "$(st_meta "$r/G_best.safetensors" epoch)" = "$best" ]
	[ "$(st_meta "$r/D_best.safetensors" epoch)" = "$best" ]
	[ "$(st_meta "$r/last_checkpoint.safetensors" epoch)" = 3 ]
	[ "$(st_meta "$r/last_checkpoint.safetensors" best_epoch)" = "$best" ]
	[ "$(st_meta "$r/last_checkpoint.safetensors" step)" = 9 ]
	# the schedule's rates, per epoch: 2e-4 (1 + cos(pi e / 50)) / 2
	$PY - "$r/train.jsonl" <<'EOF'
import json, math, sys
for e, l in enumerate(open(sys.argv[1])):
    o = json.loads(l)
    want = 2e-4 * (1 + math.cos(math.pi * e / 50)) / 2
    assert abs(o["lr_g"] - want) < 1e-12 * want, (o["lr_g"], want)
EOF
	for e in 001 002 003; do [ "$(png_size "$r/samples/epoch_$e.png")" = 96x96 ]; done
	# more epochs later: the run goes on from the checkpoint
	cp -r "$r" more
	run -0 --separate-stderr train --out more --epochs 4 --quiet
	[ "$(wc -l < more/train.jsonl)" -eq 4 ]
	[ "$(st_meta more/last_checkpoint.safetensors step)" = 12 ]
	# nothing left to do
	before=$(tree_sum more)
	run -0 --separate-stderr p2p-train --data "$DATA" --out more --epochs 4 --batch 3 --ngf 4 \
		--ndf 4 --lambda-perc 0 --threads 1
	[ "$stderr" = "p2p-train: more/last_checkpoint.safetensors: already 4 epochs trained (--epochs 4): nothing to do" ]
	[ "$(tree_sum more)" = "$before" ]
}

@test "resume after --max-steps, inside and at the end of epochs, gives the same bytes" {
	run -0 --separate-stderr train --out run --epochs 3 --sample-every 1 --max-steps 4
	[ "$(st_meta run/last_checkpoint.safetensors step)" = 4 ]
	[ "$(st_meta run/last_checkpoint.safetensors epoch)" = 1 ]
	[ "$(st_meta run/last_checkpoint.safetensors batch)" = 1 ]
	[ "$(wc -l < run/train.jsonl)" -eq 1 ]
	run -0 --separate-stderr train --out run --epochs 3 --sample-every 1 --max-steps 6
	[ "$(st_meta run/last_checkpoint.safetensors epoch)" = 2 ]
	[ "$(st_meta run/last_checkpoint.safetensors batch)" = 0 ]
	# --checkpoint-every changes when it saves, not what
	run -0 --separate-stderr train --out run --epochs 3 --sample-every 1 --max-steps 8 --checkpoint-every 1
	run -0 --separate-stderr train --out run --epochs 3 --sample-every 1
	same_run "$(REF)" run
	cmp "$(REF)/samples/epoch_003.png" run/samples/epoch_003.png
}

# run_until_checkpoint SIGNAL: start a long run that checkpoints every step,
# send SIGNAL once its first checkpoint is there, and leave its exit status in $rc
run_until_checkpoint() {
	# p2p-train itself, not a subshell running train(), must get the signal
	p2p-train --data "$DATA" --batch 3 --ngf 4 --ndf 4 --lambda-perc 0 --threads 1 --quiet \
		--out run --epochs 20 --checkpoint-every 1 & pid=$!
	for _ in $(seq 1 3000); do
		[ -f run/last_checkpoint.safetensors ] && break
		sleep 0.01
	done
	kill -"$1" $pid
	rc=0
	wait $pid || rc=$?
}

@test "SIGKILL inside an epoch, then resume: the same bytes as an uninterrupted run" {
	train --out whole --epochs 20
	run_until_checkpoint KILL
	[ $rc -eq 137 ]
	step=$(st_meta run/last_checkpoint.safetensors step)
	[ "$step" -ge 1 ] && [ "$step" -lt 60 ]
	train --out run --epochs 20
	same_run whole run
}

@test "SIGTERM: finish the step, checkpoint, exit 143; the resumed run is the same" {
	train --out whole --epochs 20
	run_until_checkpoint TERM
	[ $rc -eq 143 ]
	step=$(st_meta run/last_checkpoint.safetensors step)
	[ "$step" -ge 1 ] && [ "$step" -lt 60 ]
	run -0 --separate-stderr p2p-train --data "$DATA" --batch 3 --ngf 4 --ndf 4 --lambda-perc 0 \
		--threads 1 --out run --epochs 20
	[[ ${stderr_lines[0]} == "p2p-train: resuming run/last_checkpoint.safetensors at epoch "*", step $step" ]]
	[ "${stderr_lines[-1]}" = "p2p-train: 20 epochs done; best val L1 $(printf %.4f "$(st_meta run/G_best.safetensors val_l1)") at epoch $(st_meta run/G_best.safetensors epoch): run/G_best.safetensors" ]
	same_run whole run
}

@test "--no-resume starts over" {
	cp -r "$(REF)" run
	run -0 --separate-stderr train --out run --epochs 1 --no-resume
	[ "$(wc -l < run/train.jsonl)" -eq 1 ]
	[ "$(st_meta run/last_checkpoint.safetensors step)" = 3 ]
	train --out fresh --epochs 1
	same_run fresh run
}

@test "a NaN loss stops the run and keeps the last good checkpoint" {
	run -1 --separate-stderr train --out run --epochs 3 --lr 1e30 --checkpoint-every 1
	[[ $stderr =~ ^p2p-train:\ epoch\ 1,\ step\ 2:\ loss_[A-Za-z_]+\ is\ (NaN|infinite):\ stopping\;\ run/last_checkpoint.safetensors\ \(step\ 1\)\ is\ kept$ ]]
	[ "$(st_meta run/last_checkpoint.safetensors step)" = 1 ]
	[ ! -e run/G_best.safetensors ] && [ ! -e run/train.jsonl ]
	# with no checkpoint at all yet, it says so
	run -1 --separate-stderr train --out run2 --epochs 3 --lr 1e30
	[[ $stderr == *": stopping; no checkpoint had been written" ]]
	[ ! -e run2/last_checkpoint.safetensors ]
}

@test "bad data: each error names the file, and nothing is written" {
	cp -r "$DATA" d1
	rm d1/train/B/cat0003.png
	run -1 --separate-stderr train --data d1 --out run
	[ "$stderr" = "p2p-train: d1/train/A/cat0003.npy: no matching photo d1/train/B/cat0003.jpg" ]
	cp -r "$DATA" d2
	rm d2/val/A/cat0009.npy
	run -1 --separate-stderr train --data d2 --out run
	[ "$stderr" = "p2p-train: d2/val/B/cat0009.png: no matching heatmap d2/val/A/cat0009.npy" ]
	cp -r "$DATA" d3
	rm -r d3/val
	run -1 --separate-stderr train --data d3 --out run
	[ "$stderr" = "p2p-train: d3/val/A: No such file or directory" ]
	$PY "$FIXTURES/p2p-train/mkdata.py" d4 64 0 1 0 9
	cp -r "$DATA/train" d4/
	run -1 --separate-stderr train --data d4 --out run
	[ "$stderr" = "p2p-train: d4/val/A/cat0000.npy: heatmap is 64x64, expected 32x32" ]
	$PY "$FIXTURES/p2p-train/mkdata.py" d5 48 2 1 0
	run -1 --separate-stderr train --data d5 --out run
	[ "$stderr" = "p2p-train: d5/train: the images are 48x48; the U-Net takes a power of two from 32 to 512" ]
	[ ! -e run ]
}

@test "a checkpoint of another architecture, size or setting, or a truncated one: an error, nothing overwritten" {
	cp -r "$(REF)" run
	before=$(tree_sum run)
	run -1 --separate-stderr train --out run --epochs 4 --ngf 8
	[ "$stderr" = "p2p-train: run/last_checkpoint.safetensors: a checkpoint of another architecture (G ngf 4, D ndf 4; this run: ngf 8, ndf 4): pass the same widths to resume, or --no-resume to start over" ]
	run -1 --separate-stderr train --out run --epochs 4 --ndf 2
	[[ $stderr == "p2p-train: run/last_checkpoint.safetensors: a checkpoint of another architecture "* ]]
	run -1 --separate-stderr train --out run --epochs 4 --batch 2
	[ "$stderr" = "p2p-train: run/last_checkpoint.safetensors: trained with --batch 3, this run asks for --batch 2: pass the same setting to resume, or --no-resume to start over" ]
	run -1 --separate-stderr train --out run --epochs 4 --seed 9007199254740993
	[ "$stderr" = "p2p-train: run/last_checkpoint.safetensors: trained with --seed 42, this run asks for --seed 9007199254740993: pass the same setting to resume, or --no-resume to start over" ]
	run -1 --separate-stderr train --out run --epochs 4 --lr 1e-3
	[[ $stderr == "p2p-train: run/last_checkpoint.safetensors: trained with --lr 0.0002"*", this run asks for --lr 0.001"* ]]
	$PY "$FIXTURES/p2p-train/mkdata.py" big 64 2 1 0
	run -1 --separate-stderr train --data big --out run --epochs 4
	[ "$stderr" = "p2p-train: run/last_checkpoint.safetensors: trained on 32x32 images, the data set's are 64x64: pass --no-resume to start over" ]
	[ "$(tree_sum run)" = "$before" ]
	# truncated: the reader says what is wrong; the file stays for inspection
	head -c 5000 "$(REF)/last_checkpoint.safetensors" > run/last_checkpoint.safetensors
	before=$(tree_sum run)
	run -1 --separate-stderr train --out run --epochs 4
	[[ $stderr == "p2p-train: run/last_checkpoint.safetensors: "*"(pass --no-resume to start over)" ]]
	[ "${#stderr_lines[@]}" -eq 1 ]
	[ "$(tree_sum run)" = "$before" ]
	# not a checkpoint at all
	cp "$(REF)/G_best.safetensors" run/last_checkpoint.safetensors
	run -1 --separate-stderr train --out run --epochs 4
	[ "$stderr" = "p2p-train: run/last_checkpoint.safetensors: not a p2p-train checkpoint (no \"format\": \"p2pcat-train\" in its metadata) (pass --no-resume to start over)" ]
}

@test "--device cuda where there is none: a one-line error" {
	if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
		skip "a GPU is present"
	fi
	run -1 --separate-stderr train --out run --device cuda
	[[ $stderr == "p2p-train: cuda: "* ]]
	[ "${#stderr_lines[@]}" -eq 1 ]
	[ ! -e run ]
}
