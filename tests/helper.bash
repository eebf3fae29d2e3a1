# Shared set-up for every Bats suite: the freshly built programs first on PATH,
# a private HOME and scratch folder per test, fixtures at $FIXTURES.
bats_require_minimum_version 1.5.0

TOP=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
FIXTURES=$TOP/tests/fixtures
# scripts/run-tests sets P2P_BIN to the build being tested (build-san/bin
# for the sanitizer build)
P2P_BIN=${P2P_BIN:-$TOP/build/bin}
export PATH="$P2P_BIN:$PATH"

setup() {
	export HOME=$BATS_TEST_TMPDIR
	cd "$BATS_TEST_TMPDIR" || return 1
}

# fail MESSAGE: end the test with a message (for checks in plain bash).
fail() {
	echo "$@" >&2
	return 1
}
