# Experiment targets: data, train, eval, demo (filled in as the stages land).
.PHONY: demo
demo: deps
	@$(MAKE) --no-print-directory all
	@echo "demo: nothing to run yet"
