package services

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// PostgresBinDir finds the PostgreSQL server programs (initdb, postgres):
// $WATCHPOST_PG_BINDIR, then Debian's /usr/lib/postgresql/<major>/bin
// (newest first, 15 or later).
func PostgresBinDir() (string, error) {
	if d := os.Getenv("WATCHPOST_PG_BINDIR"); d != "" {
		return d, nil
	}
	for v := 20; v >= 15; v-- {
		d := fmt.Sprintf("/usr/lib/postgresql/%d/bin", v)
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("postgresql server (initdb, postgres) %w: apt-get install postgresql-15 (scripts/install-deps.sh does)", ErrMissing)
}

// Postgres is a private PostgreSQL server: its own data directory, a
// loopback port, trust authentication for the user "watchpost" on
// loopback only, and database "watchpost".
type Postgres struct {
	Dir  string
	Port int
	bin  string
	cred *syscall.Credential
	p    *proc
}

// StartPostgres initializes a data directory under parent (a new
// temporary directory when parent is "") and starts the server.
func StartPostgres(ctx context.Context, parent string) (*Postgres, error) {
	bin, err := PostgresBinDir()
	if err != nil {
		return nil, err
	}
	cred, uid, gid, err := dropTo("postgres")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(parent, "wp-postgres-")
	if err != nil {
		return nil, fmt.Errorf("creating the data directory: %w", err)
	}
	if cred != nil {
		if err := os.Chown(dir, uid, gid); err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("handing %s to postgres: %w", dir, err)
		}
	}
	pg := &Postgres{Dir: dir, bin: bin, cred: cred}
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", filepath.Join(dir, "data"), "-U", "watchpost",
		"--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	if err := pg.Start(ctx); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	create := exec.CommandContext(ctx, filepath.Join(bin, "psql"), "-h", "127.0.0.1", "-p", strconv.Itoa(pg.Port), "-U", "watchpost",
		"-d", "postgres", "-qAt", "-c", "CREATE DATABASE watchpost")
	if _, err := os.Stat(create.Path); err != nil {
		create.Path = "psql"
	}
	if out, err := create.CombinedOutput(); err != nil {
		pg.Stop()
		return nil, fmt.Errorf("creating database watchpost: %w\n%s", err, out)
	}
	return pg, nil
}

// Start starts the server on a free loopback port (after a Stop or Kill:
// on the same port).
func (pg *Postgres) Start(ctx context.Context) error {
	if pg.Port == 0 {
		port, err := FreePort()
		if err != nil {
			return err
		}
		pg.Port = port
	}
	cmd := exec.Command(filepath.Join(pg.bin, "postgres"), "-D", filepath.Join(pg.Dir, "data"),
		"-h", "127.0.0.1", "-p", strconv.Itoa(pg.Port), "-k", pg.Dir,
		"-c", "max_connections=200", "-c", "shared_buffers=256MB", "-c", "log_min_messages=warning",
		"-c", "max_wal_size=2GB", "-c", "checkpoint_timeout=15min")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: pg.cred}
	p, err := startProc(cmd)
	if err != nil {
		return err
	}
	pg.p = p
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := waitTCP(ctx, pg.Addr(), p.exited); err != nil {
		p.stop(syscall.SIGKILL, 0)
		return fmt.Errorf("postgres: %w\n%s", err, p.log.String())
	}
	// Accepting connections is not ready: wait until it leaves start-up (and crash recovery).
	for {
		ready := exec.CommandContext(ctx, filepath.Join(pg.bin, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(pg.Port))
		if ready.Run() == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			p.stop(syscall.SIGKILL, 0)
			return fmt.Errorf("postgres not ready: %w\n%s", ctx.Err(), p.log.String())
		case <-p.exited:
			return fmt.Errorf("postgres exited during start-up\n%s", p.log.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Addr is host:port.
func (pg *Postgres) Addr() string { return "127.0.0.1:" + strconv.Itoa(pg.Port) }

// URL is the connection string of database watchpost.
func (pg *Postgres) URL() string {
	return "postgres://watchpost@" + pg.Addr() + "/watchpost?sslmode=disable"
}

// Kill stops the server abruptly, as a crash would (immediate shutdown:
// no checkpoint, crash recovery at the next start).
func (pg *Postgres) Kill() { pg.p.stop(syscall.SIGQUIT, 10*time.Second) }

// Stop shuts the server down (fast shutdown) and keeps the data directory.
func (pg *Postgres) Stop() { pg.p.stop(syscall.SIGINT, 30*time.Second) }

// Close stops the server and removes its directory.
func (pg *Postgres) Close() {
	pg.Stop()
	_ = os.RemoveAll(pg.Dir)
}

// Log is what the server printed.
func (pg *Postgres) Log() string { return pg.p.log.String() }

// CreateDatabase creates an empty database and returns its URL.
func (pg *Postgres) CreateDatabase(ctx context.Context, name string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(pg.bin, "psql"), "-h", "127.0.0.1", "-p", strconv.Itoa(pg.Port), "-U", "watchpost",
		"-d", "postgres", "-qAt", "-c", "CREATE DATABASE "+name)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("creating database %s: %w\n%s", name, err, out)
	}
	return "postgres://watchpost@" + pg.Addr() + "/" + name + "?sslmode=disable", nil
}

// Required reports whether tests must fail rather than skip when a daemon
// is missing: in CI and under `make test` as root
// (WATCHPOST_REQUIRE_PRIVILEGED=1 or WATCHPOST_REQUIRE_SERVICES=1).
func Required() bool {
	return os.Getenv("WATCHPOST_REQUIRE_SERVICES") == "1" || os.Getenv("WATCHPOST_REQUIRE_PRIVILEGED") == "1"
}

// Pid is the postmaster's process id (0 when stopped); CPUSeconds counts
// its backends with it.
func (pg *Postgres) Pid() int { return pg.p.pid() }
