# canary-gate: every entry point a person or CI uses.
SHELL := /bin/bash
.DEFAULT_GOAL := help
NPM ?= npm
MOCHA := node_modules/.bin/mocha

.PHONY: help deps build image test test-unit test-e2e bench demo demo-rollback demo-traefik deploy cluster-up cluster-down cluster-build manifests clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

node_modules/.package-lock.json: package.json package-lock.json
	$(NPM) ci --no-audit --no-fund --loglevel=error
	@touch $@

deps: node_modules/.package-lock.json ## Install npm packages (cached in ~/.npm)

build: deps ## Compile TypeScript into dist/
	node_modules/.bin/tsc -p tsconfig.json

test-unit: build ## Fast tests: no cluster needed
	$(MOCHA) 'dist/test/unit/**/*.test.js'

cluster-build: ## Build (once, cached outside the repo) the control-plane binaries, Flux's included
	FLUX_BUILD=1 test/cluster/build.sh >/dev/null

image: ## Build the image canary-gate:<version> into the local image store (podman, no Docker, no pulls)
	deploy/image/build.sh

test-e2e: build cluster-build image ## End-to-end tests against the real local control plane (and the built image)
	@# Real Pods and real traffic, one file at a time after the rest: their
	@# request bursts and timings should neither slow nor be slowed by the others.
	@# The second run always runs: it is the one that stops a cluster the first
	@# started, and the target fails if either failed.
	CANARY_GATE_E2E_MORE=1 $(MOCHA) --config test/e2e/.mocharc.json; status=$$?; \
	$(MOCHA) --config test/e2e/.mocharc.real.json || status=1; exit $$status

test: test-unit test-e2e ## All tests: unit, then end to end (builds Kubernetes on first run)

bench: build cluster-build ## Benchmarks (print figures): webhook, then reconciler
	node dist/test/bench/webhook.bench.js
	node dist/test/bench/reconciler.bench.js

demo: build cluster-build ## The local demo: control plane, webhook, reconciler, a sample app rolled out
	node dist/test/demo/demo.js

demo-rollback: build cluster-build ## The local demo with a failing smoke test: the change is rolled back
	node dist/test/demo/demo.js --rollback

demo-traefik: build cluster-build ## The local demo through a real Traefik v3 (gatewayapi router, exact weights)
	node dist/test/demo/demo.js --traefik

demo-gitops: build cluster-build ## The local demo through git: a commit of the new image, the real Flux applies it, canary-gate rolls it out
	node dist/test/demo/demo.js --gitops

deploy: ## Install into the cluster of the current kubeconfig (kubectl apply -k deploy/base)
	kubectl apply --server-side -k deploy/base

cluster-up: cluster-build ## Start the local control plane (kubeconfig in .cluster/kubeconfig; FLUX=1: Flux and a git server too)
	test/cluster/up.sh

cluster-down: ## Stop the local control plane
	test/cluster/down.sh

manifests: build ## Regenerate deploy/ from the typed manifests
	node dist/core/cli.js manifests

clean: ## Remove build output and cluster state
	rm -rf dist .cluster
