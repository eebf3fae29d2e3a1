#!/usr/bin/env bats
# p2p-train on the GPU, on a tiny data set (32x32, 8 train / 3 val images,
# widths 4): the input pipeline makes the CPU run's batches (checked on the
# CPU, bit for bit, where no GPU is needed); a checkpoint written on the GPU
# resumes on the CPU and the other way round, and a strict-FP32 GPU run
# follows the CPU run's numbers. The GPU tests skip where no GPU can be used.
load helper

PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

setup_file() {
	export DATA=$BATS_FILE_TMPDIR/data
	$PY "$FIXTURES/p2p-train/mkdata.py" "$DATA" 32 8 3 2
	# the CPU reference: 3 epochs of 3 steps (batches of 3, 3, 2)
	train --out "$BATS_FILE_TMPDIR/ref" --epochs 3
	# a GPU if one works: else why not, for the skips. A GPU that is there
	# but fails is no reason to skip: the tests then fail and say why.
	export NO_GPU=
	local out
	if ! out=$(train --out "$BATS_FILE_TMPDIR/probe" --device cuda --max-steps 1 2>&1); then
		case $out in
		*"no CUDA device"* | *"no CUDA backend"*) NO_GPU=${out#p2p-train: } ;;
		esac
	fi
}

# the tiny configuration; extra flags after it
train() {
	p2p-train --data "$DATA" --batch 3 --ngf 4 --ndf 4 --lambda-perc 0 --threads 2 \
		--sample-every 1 --quiet "$@"
}

REF() { echo "$BATS_FILE_TMPDIR/ref"; }

need_gpu() {
	[ -z "$NO_GPU" ] || skip "$NO_GPU"
}

# the log without its clock fields
log_numbers() {
	sed -E 's/,"seconds":[^,}]*//; s/,"images_per_s":[^,}]*//' "$1/train.jsonl"
}

# meta FILE KEY: a metadata value of a safetensors file
meta() {
	local n
	n=$(od -An -t u8 -N 8 "$1" | tr -d ' ')
	head -c $((8 + n)) "$1" | tail -c "$n" | grep -oE "\"$2\":\"[^\"]*\"" | head -n 1 |
		sed -E 's/^"[^"]*":"//; s/"$//'
}

# close RUN TOL [EPOCHS]: every number of RUN's log within a relative TOL
# of the reference's (the first EPOCHS lines, all by default)
close() {
	paste -d '\n' <(log_numbers "$(REF)" | head -n "${3:-99}") \
		<(log_numbers "$1" | head -n "${3:-99}") |
		awk -v tol="$2" '
		function nums(s, a,   n, t) {
			n = 0
			while (match(s, /"[a-z_0-9]+":-?[0-9.e+-]+/)) {
				t = substr(s, RSTART, RLENGTH); s = substr(s, RSTART + RLENGTH)
				sub(/^"[a-z_0-9]+":/, "", t); a[++n] = t + 0
			}
			return n
		}
		NR % 2 { nr = nums($0, r); next }
		{
			if (nums($0, g) != nr) { print "line " NR / 2 ": other keys"; bad = 1; next }
			for (i = 1; i <= nr; i++) {
				d = g[i] - r[i]; d = d < 0 ? -d : d
				s = r[i] < 0 ? -r[i] : r[i]; s = s > 1e-6 ? s : 1e-6
				if (d / s > tol) { printf "epoch %d, number %d: %.9g vs %.9g\n", NR / 2, i, g[i], r[i]; bad = 1 }
				if (d / s > worst) worst = d / s
			}
		}
		END { printf "largest relative difference %.3g (limit %g)\n", worst, tol; exit bad }'
}

@test "the input pipeline, here on the CPU, trains on the very same batches" {
	P2P_PIPELINE=1 train --out pipe --epochs 3
	cmp "$(REF)/last_checkpoint.safetensors" pipe/last_checkpoint.safetensors
	cmp "$(REF)/G_best.safetensors" pipe/G_best.safetensors
	diff <(log_numbers "$(REF)") <(log_numbers pipe)
	# stopped inside an epoch and at its end, resumed: still the same run
	P2P_PIPELINE=1 train --out stop --epochs 3 --max-steps 2
	P2P_PIPELINE=1 train --out stop --epochs 3 --max-steps 6
	P2P_PIPELINE=1 train --out stop --epochs 3
	cmp "$(REF)/last_checkpoint.safetensors" stop/last_checkpoint.safetensors
	diff <(log_numbers "$(REF)") <(log_numbers stop)
}

@test "P2P_PIPELINE=0 on a GPU: batches prepared between steps, same run" {
	need_gpu
	train --out on --epochs 1 --device cuda
	P2P_PIPELINE=0 train --out off --epochs 1 --device cuda
	# the GPU's arithmetic is deterministic too
	cmp on/last_checkpoint.safetensors off/last_checkpoint.safetensors
}

@test "a GPU checkpoint resumes on the CPU and back; strict FP32 follows the CPU run" {
	need_gpu
	run -0 --separate-stderr p2p-train --data "$DATA" --batch 3 --ngf 4 --ndf 4 \
		--lambda-perc 0 --threads 2 --sample-every 1 --out run --epochs 1 --device cuda --no-tf32
	# the device and its memory, on stderr
	[[ $stderr == *"MiB of GPU memory at most"* ]]
	[ "$(meta run/last_checkpoint.safetensors epoch)" = 1 ]
	train --out run --epochs 2
	[ "$(meta run/last_checkpoint.safetensors step)" = 6 ]
	train --out run --epochs 3 --device cuda --no-tf32
	[ "$(meta run/last_checkpoint.safetensors step)" = 9 ]
	[ "$(wc -l < run/train.jsonl)" = 3 ]
	[ -f run/samples/epoch_003.png ]
	# each number near the CPU run's: the first epoch's closely
	close run 1e-3 1
	close run 2e-2
	# and the other way round, TF32 on: a CPU checkpoint goes on on the GPU
	train --out back --epochs 1
	train --out back --epochs 2 --device cuda
	train --out back --epochs 3
	[ "$(meta back/last_checkpoint.safetensors step)" = 9 ]
	close back 1e-1
	# a generator trained on the GPU draws on the CPU
	p2p-gen -m run/G_best.safetensors -o gen "$DATA"/test/A/*.npy 2>/dev/null
	[ "$(ls gen | wc -l)" = 2 ]
}
