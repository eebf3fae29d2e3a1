#!/usr/bin/env bats
# scripts/slurm on a real one-node Slurm that the suite starts for itself
# (munged, slurmctld and slurmd as root, a minimal slurm.conf, ports and
# folders of its own, all stopped at the end even when a test fails): the
# whole chain from scripts/slurm/pipeline, whose data set is the one an
# unsharded run makes; the training job warned of its time limit
# checkpoints, requeues and ends with the bytes of an unbroken run;
# scancel stops it with a checkpoint and no requeue. The Slurm tests skip,
# saying why, where Slurm cannot start (not root, Debian's slurm-wlm and
# munge missing, a daemon that fails); the pipeline's dry run and the job
# scripts outside Slurm are tested everywhere.
load helper

PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
SLURM=$TOP/scripts/slurm
TINY="--batch 4 --ngf 4 --ndf 4 --lambda-perc 0"

# two free TCP ports on the loopback
free_ports() {
	$PY -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s:
    x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))'
}

# detached LOG CMD...: run CMD with its output into LOG and no other file
# open; bats waits for every process that holds one of its pipes
detached() {
	local log=$1
	shift
	(
		for fd in /proc/$BASHPID/fd/*; do
			fd=${fd##*/}
			[ "$fd" -gt 2 ] && eval "exec $fd>&-"
		done
		exec "$@" </dev/null >>"$log" 2>&1
	)
}

# why NAME: the last line NAME said, on its output or in its log
why() {
	cat "$SL/log/$1.out" "$SL/log/$1.log" 2>/dev/null | grep . | tail -n 1
}

# Start munged, slurmctld and slurmd in $SL; NO_SLURM says why not.
start_slurm() {
	[ "$(id -u)" = 0 ] || { NO_SLURM="not root: slurmd must run as root"; return 0; }
	local p
	export PATH=$PATH:/usr/sbin
	for p in munged slurmctld slurmd sbatch squeue sinfo scontrol scancel; do
		command -v $p >/dev/null || { NO_SLURM="no $p (Debian: slurm-wlm munge)"; return 0; }
	done
	# a short path: munge's socket name must fit in 108 bytes
	SL=$(mktemp -d /tmp/p2p-slurm.XXXXXX)
	echo "$SL" >"$BATS_FILE_TMPDIR/slurm-dir"
	mkdir -p "$SL/munge" "$SL/state" "$SL/spool" "$SL/log"
	chmod 700 "$SL/munge"
	head -c 1024 /dev/urandom >"$SL/munge/key"
	chmod 400 "$SL/munge/key"
	detached "$SL/log/munged.out" munged --force --socket="$SL/munge/sock" --key-file="$SL/munge/key" \
		--log-file="$SL/log/munged.log" --pid-file="$SL/munge.pid" \
		--seed-file="$SL/munge/seed" ||
		{ NO_SLURM="munged does not start: $(why munged)"; return 0; }
	local ports host
	ports=($(free_ports))
	host=$(hostname -s)
	cat >"$SL/slurm.conf" <<-EOF
		ClusterName=p2ptest
		SlurmctldHost=$host(127.0.0.1)
		SlurmctldPort=${ports[0]}
		SlurmdPort=${ports[1]}
		SlurmUser=root
		SlurmdUser=root
		AuthType=auth/munge
		CredType=cred/munge
		AuthInfo=socket=$SL/munge/sock
		StateSaveLocation=$SL/state
		SlurmdSpoolDir=$SL/spool
		SlurmctldPidFile=$SL/slurmctld.pid
		SlurmdPidFile=$SL/slurmd.pid
		SlurmctldLogFile=$SL/log/slurmctld.log
		SlurmdLogFile=$SL/log/slurmd.log
		ProctrackType=proctrack/linuxproc
		TaskPlugin=task/none
		JobAcctGatherType=jobacct_gather/none
		AccountingStorageType=accounting_storage/none
		JobCompType=jobcomp/none
		MpiDefault=none
		SelectType=select/cons_tres
		SelectTypeParameters=CR_Core
		SchedulerType=sched/builtin
		SchedulerParameters=sched_interval=1
		ReturnToService=2
		MinJobAge=600
		KillWait=10
		InactiveLimit=0
		NodeName=p2pnode NodeHostname=$host NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
		PartitionName=test Nodes=p2pnode Default=YES MaxTime=INFINITE State=UP
	EOF
	export SLURM_CONF=$SL/slurm.conf
	# a watchdog: the daemons go even if this suite is killed outright
	detached /dev/null bash -c 'echo $$ >"$0/watchdog.pid"; trap "kill \$s; exit" TERM
		sleep 600 & s=$!; wait $s
		for f in slurmd slurmctld munge; do kill "$(cat "$0/$f.pid")"; done' "$SL" &
	detached "$SL/log/slurmctld.out" slurmctld -f "$SL/slurm.conf" ||
		{ NO_SLURM="slurmctld does not start: $(why slurmctld)"; return 0; }
	detached "$SL/log/slurmd.out" slurmd -f "$SL/slurm.conf" -N p2pnode ||
		{ NO_SLURM="slurmd does not start: $(why slurmd)"; return 0; }
	local i
	for i in $(seq 1 100); do
		[ "$(sinfo -h -N -o %t 2>/dev/null)" = idle ] && return
		sleep 0.2
	done
	NO_SLURM="the node does not come up: $(why slurmd)"
}

# alive PID: running, not a zombie (a container's first process may reap none)
alive() {
	[ -r "/proc/$1/stat" ] && ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat"
}

stop_slurm() {
	local SL f
	SL=$(cat "$BATS_FILE_TMPDIR/slurm-dir" 2>/dev/null) || return 0
	[ -n "$SL" ] && [ -d "$SL" ] || return 0
	if [ -f "$SL/slurmctld.pid" ]; then
		SLURM_CONF=$SL/slurm.conf scancel --quiet --full -u root 2>/dev/null
		sleep 1
	fi
	for f in slurmd slurmctld munge watchdog; do
		[ -f "$SL/$f.pid" ] && kill "$(cat "$SL/$f.pid")" 2>/dev/null
	done
	for f in slurmd slurmctld munge; do
		for _ in $(seq 1 50); do
			[ -f "$SL/$f.pid" ] && alive "$(cat "$SL/$f.pid")" || break
			sleep 0.1
		done
	done
	rm -rf "$SL"
}

setup_file() {
	# a suite run inside a Slurm job must not pass that job's settings on
	unset $(compgen -e | grep -E '^(SLURM|SBATCH|SALLOC)_') 2>/dev/null || true
	export NO_SLURM=
	start_slurm || true
	if [ -n "$NO_SLURM" ]; then
		stop_slurm
		return 0
	fi
	# the photos for every test
	catflw-synth -q -o "$BATS_FILE_TMPDIR/cat" -n 24 -s 96 --seed 5
}

teardown_file() {
	stop_slurm
}

need_slurm() {
	[ -z "$NO_SLURM" ] || skip "$NO_SLURM"
}

# wait_jobs SECONDS ID...: until none of the jobs is pending or running
wait_jobs() {
	local t=$1
	shift
	local ids
	ids=$(IFS=,; echo "$*")
	for _ in $(seq 1 $((t * 5))); do
		[ -z "$(squeue -h -j "$ids" 2>/dev/null)" ] && return 0
		sleep 0.2
	done
	echo "jobs $ids still queued after $t s:" >&2
	squeue >&2
	return 1
}

# job_state ID: COMPLETED, CANCELLED, PENDING... (an array job's tasks' states, once each)
job_state() {
	scontrol show job "$1" | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | sort -u | paste -sd' '
}

# a fingerprint of every file in a folder
tree_sum() {
	(cd "$1" && find . -type f | LC_ALL=C sort | xargs md5sum)
}

@test "the pipeline's dry run: five jobs, each after the one before" {
	run -0 --separate-stderr "$SLURM/pipeline" --catflw cat --data d --run r --shards 3 \
		--gen-shards 2 --train-sbatch "--time=1:00:00 --gres=gpu:1" --device cuda --dry-run
	[ "$output" = "$(printf 'prep 1001\nsplit 1002\ntrain 1003\ngen 1004\nmetrics 1005')" ]
	[[ ${stderr_lines[0]} == *" --array=0-2 "*"/prep.sbatch --catflw cat --prep d.prep --size 256 --sigma 2.0" ]]
	[[ ${stderr_lines[1]} == *" --dependency=afterok:1001 "*"/split.sbatch --prep d.prep --data d --shards 3" ]]
	[[ ${stderr_lines[2]} == *" --dependency=afterok:1002 "*" --time=1:00:00 --gres=gpu:1 "*"/train.sbatch --data d --run r --device cuda --epochs 100 --batch 24 --lambda-l1 150 --lambda-perc 2" ]]
	[[ ${stderr_lines[3]} == *" --dependency=afterok:1003 --array=0-1 "*"/gen.sbatch --data d --run r --device cuda" ]]
	[[ ${stderr_lines[4]} == *" --dependency=afterok:1004 "*"/metrics.sbatch --data d --run r" ]]
	run -0 --separate-stderr "$SLURM/pipeline" --data d --run r --from train --dry-run
	[ "$output" = "$(printf 'train 1001\ngen 1002\nmetrics 1003')" ]
	run -2 --separate-stderr "$SLURM/pipeline" --data d --run r
	[ "$stderr" = "pipeline: --catflw DIR is required to prepare the data (or --from train)" ]
	run -2 --separate-stderr "$SLURM/pipeline" --data d --run r --from eval
	[ "$stderr" = "pipeline: --from: expected prep, train or gen, got 'eval'" ]
	run -2 --separate-stderr "$SLURM/pipeline" --catflw c --data d --run r --shards 0
	[ "$stderr" = "pipeline: --shards: expected a positive count, got '0'" ]
}

@test "make slurm-pipeline: the experiment's settings to the pipeline" {
	run -0 --separate-stderr make -s -C "$TOP" slurm-pipeline CATFLW=c DATA=d RUN=r SIZE=64 \
		DEVICE=cuda TRAIN_FLAGS="--epochs 3" SLURM_FLAGS="--shards 2 --dry-run"
	[ "${lines[0]}" = "prep 1001" ] && [ "${lines[4]}" = "metrics 1005" ]
	[[ ${stderr_lines[0]} == *"--export=ALL,P2P_BIN=$P2P_BIN "*" --array=0-1 "*"/prep.sbatch --catflw c --prep d.prep --size 64 --sigma 2.0" ]]
	[[ ${stderr_lines[2]} == *"/train.sbatch --data d --run r --device cuda --epochs 3" ]]
}

@test "the job scripts run outside Slurm too, as one task of one" {
	catflw-synth -q -o cat -n 6 -s 96 --seed 2
	run -0 bash "$SLURM/prep.sbatch" --catflw cat --prep p --size 32
	[ "$(wc -l < p/parts/heat.0-of-1.jsonl)" -eq 6 ]
	run -0 bash "$SLURM/split.sbatch" --prep p --data d --shards 1
	[ -f d/test.jsonl ] && [ -f p/heat.jsonl ] && [ -f p/crops.jsonl ]
	run -1 bash "$SLURM/split.sbatch" --prep p --data d --shards 2
	[[ $output == *"split.sbatch: p/parts/crops.0-of-2.jsonl is missing: did every preparation task end well?" ]]
}

@test "the whole chain through sbatch: the data set of an unsharded run, a model, scores" {
	need_slurm
	ln -s "$BATS_FILE_TMPDIR/cat" cat
	run -0 --separate-stderr "$SLURM/pipeline" --catflw cat --data data --run run --shards 3 \
		--gen-shards 2 --size 32 --sbatch "--cpus-per-task=1" \
		--train-flags "--epochs 2 $TINY"
	[ "${#lines[@]}" -eq 5 ]
	ids=($(cut -d' ' -f2 <<<"$output"))
	wait_jobs 90 "${ids[@]}"
	for id in "${ids[@]}"; do
		[ "$(job_state "$id")" = COMPLETED ] || { cat run/slurm/*; fail "job $id: $(job_state "$id")"; }
	done
	# three shards of 8: the records and the data set of one unsharded run
	[ "$(ls run/slurm/p2p-prep-*_*.out | wc -l)" -eq 3 ]
	mkdir one
	(cd one && ln -s ../cat cat && mkdir data.prep &&
		catflw-crop --quiet -o data.prep/crops -s 32 cat >data.prep/crops.jsonl &&
		lm2heat --quiet -o data.prep/heat data.prep/crops.jsonl >data.prep/heat.jsonl &&
		splitset --quiet -o data data.prep/heat.jsonl)
	diff <(LC_ALL=C sort data.prep/heat.jsonl) <(LC_ALL=C sort one/data.prep/heat.jsonl)
	diff <(tree_sum data) <(tree_sum one/data)
	# training, generation and scores, in make eval's places
	[ -f run/train.done ] && [ -f run/G_best.safetensors ] && [ "$(wc -l < run/train.jsonl)" -eq 2 ]
	[ "$(ls run/eval/gen | wc -l)" -eq "$(wc -l < data/test.jsonl)" ]
	[ -f run/eval/grid.png ]
	[[ $(cat run/eval/metrics.json) == "{\"count\":$(wc -l < data/test.jsonl),\"l1\":"* ]]
}

# train_job RUN EPOCHS: submit a training job on the prepared set; its id in $job
train_job() {
	job=$(sbatch --parsable --cpus-per-task=1 --export="ALL,P2P_BIN=$P2P_BIN" \
		-o "$1.out" "$SLURM/train.sbatch" --data data --run "$1" --epochs "$2" $TINY \
		--checkpoint-every 1)
}

# prepare: the data set, made here without Slurm
prepare() {
	ln -s "$BATS_FILE_TMPDIR/cat" cat
	mkdir p
	catflw-crop --quiet -o p/crops -s 32 cat | lm2heat --quiet -o p/heat >p/heat.jsonl
	splitset --quiet -o data p/heat.jsonl
}

# wait_for FILE: until it is there (10 s at most)
wait_for() {
	for _ in $(seq 1 200); do
		[ -f "$1" ] && return 0
		sleep 0.05
	done
	return 1
}

@test "near its time limit the training job checkpoints, requeues and goes on to an unbroken run's bytes" {
	need_slurm
	prepare
	p2p-train --data data --out whole --epochs 40 $TINY --threads 1 --quiet
	train_job run 40
	wait_for run/last_checkpoint.safetensors
	# what --signal=B:USR1@180 sends before the time limit
	scancel --batch --signal=USR1 "$job"
	# a loaded machine may take a while to checkpoint and requeue
	for _ in $(seq 1 600); do
		[ "$(job_state "$job")" = PENDING ] && break
		sleep 0.1
	done
	[ "$(job_state "$job")" = PENDING ]
	scontrol show job "$job" | grep -q "Restarts=1"
	grep -q "^p2p-train: stopped (SIGUSR1) after step [0-9]*: run/last_checkpoint.safetensors saved" run.out
	grep -q "^p2p-train: status 138; requeueing job $job to go on from run/last_checkpoint.safetensors$" run.out
	[ ! -e run/train.done ]
	# Slurm holds a requeued job back two minutes: this one three seconds.
	# Not less: slurmd refuses a launch whose credential is from the same
	# second as the kill that revoked the last one ("Job credential revoked").
	scontrol update jobid="$job" StartTime=now+3
	wait_jobs 300 "$job"
	[ "$(job_state "$job")" = COMPLETED ] ||
		{ echo "state: $(job_state "$job")"; tail -n 5 run.out
		  grep -h "JobId=$job\|job $job\|StepId=$job\|error" "$(cat "$BATS_FILE_TMPDIR/slurm-dir")"/log/slurm*.log |
		  tail -n 25; return 1; }
	grep -q "^p2p-train: resuming run/last_checkpoint.safetensors at epoch [0-9]*, step [0-9]*$" run.out
	[ -f run/train.done ]
	cmp whole/last_checkpoint.safetensors run/last_checkpoint.safetensors
	cmp whole/G_best.safetensors run/G_best.safetensors
}

@test "scancel: p2p-train checkpoints on SIGTERM, the job ends and is not requeued" {
	need_slurm
	prepare
	train_job run 1000
	wait_for run/last_checkpoint.safetensors
	scancel "$job"
	wait_jobs 30 "$job"
	[ "$(job_state "$job")" = CANCELLED ]
	grep -q "^p2p-train: stopped (SIGTERM) after step [0-9]*: run/last_checkpoint.safetensors saved" run.out
	! grep -q requeueing run.out
	[ ! -e run/train.done ]
	# a resubmission goes on from there
	step=$(grep -o 'stopped (SIGTERM) after step [0-9]*' run.out | grep -o '[0-9]*$')
	p2p-train --data data --out run --epochs 1000 $TINY --max-steps $((step + 1)) 2>err
	grep -q "resuming run/last_checkpoint.safetensors at epoch [0-9]*, step $step$" err
}
