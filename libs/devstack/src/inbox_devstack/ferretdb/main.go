// Command ferretdb-runner runs an embedded FerretDB v1 (SQLite backend) for the local devstack.
//
// It exists because `go install github.com/FerretDB/FerretDB/cmd/ferretdb` panics at start:
// its version file is generated and not part of the module. The embeddable package has no such problem.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	dataDir := flag.String("data-dir", "data/ferretdb", "directory for SQLite databases")
	logLevel := flag.String("log-level", "warn", "log level: debug, info, warn, error")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb-runner: bad -log-level: %v\n", err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	gcPercent, memoryLimit := tuneGC()

	dir, err := filepath.Abs(*dataDir)
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		logger.Error("cannot prepare data dir", "dir", *dataDir, "error", err)
		os.Exit(1)
	}

	f, err := ferretdb.New(&ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: *listen},
		Logger:   logger,
		Handler:  "sqlite",
		// BEGIN IMMEDIATE: concurrent writers wait on the busy timeout instead of failing
		// with SQLITE_BUSY when a read transaction cannot be upgraded to a write one.
		// synchronous=NORMAL (FerretDB uses WAL): a commit is written, not fsynced, so it
		// survives a crash or kill -9 of any process but not of the machine (power loss, OS
		// crash), the right trade for a local stack; the default (FULL) fsyncs every commit.
		SQLiteURL: "file:" + dir + "/?_txlock=immediate&_pragma=synchronous(normal)",
	})
	if err != nil {
		logger.Error("cannot create FerretDB", "error", err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	logger.Warn(
		"ferretdb-runner listening",
		"addr", *listen, "data_dir", dir, "gogc", gcPercent, "gomemlimit", memoryLimit,
	)
	if err := f.Run(ctx); err != nil {
		logger.Error("FerretDB stopped with error", "error", err)
		os.Exit(1)
	}
	logger.Warn("ferretdb-runner stopped")
}

// Defaults of the Go garbage collector unless GOGC / GOMEMLIMIT say otherwise.
//
// FerretDB's live heap is small (tens of MB) and it allocates a lot per document (SJSON
// decoding of every row read), so with Go's default GOGC=100 it collected every few MB: a
// tenth of its CPU under the services' benchmarks, nearly half on scans of large
// collections (libs/devstack/README.md). A larger heap target with a memory limit behind it
// keeps the collector's work small and the heap bounded: near the limit it collects as
// often as it must.
const (
	defaultGCPercent   = 1000
	defaultMemoryLimit = 1 << 30 // bytes
)

// tuneGC applies the defaults the environment does not override; it returns the settings in force.
func tuneGC() (gcPercent int, memoryLimit int64) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	gcPercent = debug.SetGCPercent(-1)         // reads the setting (and turns collection off) ...
	debug.SetGCPercent(gcPercent)              // ... so put it back at once
	return gcPercent, debug.SetMemoryLimit(-1) // a negative limit only reads it
}
