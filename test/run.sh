#!/usr/bin/env bash
# Runs the whole test suite: installs what the tests need, vets, then runs
# every Go test (unit, integration and interop) with the race detector.
# Exits non-zero on any failure.
set -euo pipefail

cd "$(dirname "$0")/.."

bash test/install.sh

echo "== go vet ./..."
go vet ./...

echo "== golangci-lint run ./... (.golangci.yml)"
"$(go env GOPATH)/bin/golangci-lint" run ./...

echo "== go test -race -count=1 -timeout 75m ./..."
go test -race -count=1 -timeout 75m ./...
