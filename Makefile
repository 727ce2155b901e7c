# seatmap — `make run` serves the demo; `make test` runs everything.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
DATA := $(CURDIR)/.data

.PHONY: run test stop build generate fmt vet fuzz faults

build:
	go build -o bin/seatmap .

# Private Postgres and Redis under .data/ (reused when running), unless
# DATABASE_URL / REDIS_URL are set; migrate, seed the demo once, serve.
run: build
	@scripts/deps
	@scripts/run

test:
	@scripts/test

stop:
	@scripts/services down $(DATA)

generate:
	go tool templ generate

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	go vet ./...

fuzz:
	scripts/fuzz 60s

# The long fault-injection suite (docs/RELIABILITY.md): its own Postgres and
# Redis, real kills and restarts; the short suite runs in `make test`.
faults:
	FAULTS_LONG=1 go test -tags faults -count=1 -timeout 60m -v ./faults/
