#!/usr/bin/env bats
# p2p-train over MPI (make MPI=1, build/mpi/bin/p2p-train) on a tiny data set
# (32x32, 8 train / 3 val images, widths 4): 2 ranks with half a batch each
# give one process's weights, uneven and empty shares too; rank 0 alone
# writes; a 2-rank run resumes from its own checkpoint and from one
# process's; SIGUSR1 to mpirun stops every rank at the same step with a
# checkpoint. Skipped, saying why, without mpirun or the MPI build.
load helper

# mpirun as root, more ranks than cores, no ssh and no cross-memory attach
# (both often missing in containers): one machine is all these tests need
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_plm=isolated OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

setup_file() {
	export MPI_TRAIN=$TOP/build/mpi/bin/p2p-train
	export NO_MPI=
	if ! command -v mpirun >/dev/null; then
		NO_MPI="no mpirun (Debian: openmpi-bin)"
	elif [ ! -x "$MPI_TRAIN" ]; then
		NO_MPI="no MPI build: run make MPI=1 (Debian: libopenmpi-dev)"
	elif ! out=$(timeout 60 mpirun -np 2 "$MPI_TRAIN" --version 2>&1); then
		NO_MPI="mpirun -np 2 fails here: $(echo "$out" | grep -m 1 .)"
	fi
	[ -z "$NO_MPI" ] || return 0
	export DATA=$BATS_FILE_TMPDIR/data
	$PY "$FIXTURES/p2p-train/mkdata.py" "$DATA" 32 8 3 2
}

need_mpi() {
	[ -z "$NO_MPI" ] || skip "$NO_MPI"
}

# the tiny configuration; extra flags after it
flags() {
	echo --data "$DATA" --ngf 4 --ndf 4 --lambda-perc 0 --threads 1 --quiet
}

# train [p2p-train flags]: one process, the plain build
train() {
	p2p-train $(flags) "$@"
}

# mpitrain N [p2p-train flags]: N ranks of the MPI build
mpitrain() {
	local n=$1
	shift
	timeout 120 mpirun -np "$n" "$MPI_TRAIN" $(flags) "$@"
}

# The biases of the convolutions that InstanceNorm follows (size 32: G's
# down 1-3 and up 0-3, D's conv 1-3) have no effect and a gradient of
# exactly 0, so their values are rounding noise scaled up by Adam in any
# run: left out of the comparisons.
SKIP='^(down\.[1-3]|up\.[0-3]|conv\.[1-3])\.bias$'

# close A B: the weights in checkpoints A and B within 1e-4, normwise
close() {
	local d
	d=$($PY "$FIXTURES/mpi/stdiff.py" "$1" "$2" "$SKIP")
	echo "normwise relative difference: $d"
	$PY -c "import sys; sys.exit(not float('$d') < 1e-4)"
}

# the log without its clock fields
log_numbers() {
	sed -E 's/,"seconds":[^,}]*//; s/,"images_per_s":[^,}]*//' "$1/train.jsonl"
}

@test "2 ranks of batch 2 after 3 steps: the weights of one process with batch 4" {
	need_mpi
	train --out one --batch 4 --max-steps 3
	run -0 --separate-stderr mpitrain 2 --out two --batch 4 --max-steps 3
	close two/last_checkpoint.safetensors one/last_checkpoint.safetensors
	# rank 0 alone wrote, the files one process writes
	[ "$(cd two && ls)" = "$(cd one && ls)" ]
	[ "$(wc -l < two/train.jsonl)" -eq 1 ]
}

@test "uneven shares (5 = 2 + 3) and a rank with none (a last batch of 2 on 3 ranks)" {
	need_mpi
	train --out one5 --batch 5 --epochs 2
	mpitrain 2 --out two5 --batch 5 --epochs 2
	close two5/last_checkpoint.safetensors one5/last_checkpoint.safetensors
	train --out one3 --batch 3 --epochs 2
	mpitrain 3 --out three3 --batch 3 --epochs 2
	close three3/last_checkpoint.safetensors one3/last_checkpoint.safetensors
	# the losses and the validation reduced over the ranks: the same log to 6 digits
	round() { log_numbers "$1" | sed -E 's/([0-9]\.[0-9]{5})[0-9]*/\1/g'; }
	diff <(round three3) <(round one3)
}

@test "a 2-rank run stopped by --max-steps resumes to the bytes of an unbroken one" {
	need_mpi
	mpitrain 2 --out whole --batch 4 --epochs 3
	mpitrain 2 --out run --batch 4 --epochs 3 --max-steps 3
	run -0 --separate-stderr mpitrain 2 --out run --batch 4 --epochs 3 --progress
	[[ $stderr == *"p2p-train: resuming run/last_checkpoint.safetensors at epoch 2, step 3"* ]]
	cmp whole/last_checkpoint.safetensors run/last_checkpoint.safetensors
	cmp whole/G_best.safetensors run/G_best.safetensors
	diff <(log_numbers whole) <(log_numbers run)
}

@test "one process's checkpoint goes on with 2 ranks (--batch is the global batch)" {
	need_mpi
	train --out one --batch 4 --epochs 2
	train --out mixed --batch 4 --epochs 2 --max-steps 2
	mpitrain 2 --out mixed --batch 4 --epochs 2
	close mixed/last_checkpoint.safetensors one/last_checkpoint.safetensors
	[ "$(wc -l < mixed/train.jsonl)" -eq 2 ]
}

@test "SIGUSR1 to mpirun: every rank stops at one step, rank 0 checkpoints; the resumed run is the same" {
	need_mpi
	mpitrain 2 --out whole --batch 3 --epochs 20
	# mpirun itself must get the signal (timeout would die of it)
	mpirun -np 2 "$MPI_TRAIN" $(flags) --out run --batch 3 --epochs 20 \
		--checkpoint-every 1 2>err & pid=$!
	for _ in $(seq 1 3000); do
		[ -f run/last_checkpoint.safetensors ] && break
		sleep 0.01
	done
	kill -USR1 $pid
	rc=0
	wait $pid || rc=$?
	cat err
	[ $rc -eq 138 ]
	grep -q "^p2p-train: stopped (SIGUSR1) after step [0-9]*: run/last_checkpoint.safetensors saved; run again to resume$" err
	[ "$(grep -c "^p2p-train: stopped" err)" -eq 1 ]     # rank 0 alone says so
	mpitrain 2 --out run --batch 3 --epochs 20
	cmp whole/last_checkpoint.safetensors run/last_checkpoint.safetensors
	diff <(log_numbers whole) <(log_numbers run)
}
