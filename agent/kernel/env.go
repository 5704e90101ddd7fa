package kernel

import (
	"fmt"
	"regexp"
)

// Environment capture modes (Env.Mode).
const (
	EnvListed = "listed" // only the variables named in Env.Names
	EnvAll    = "all"
	EnvOff    = "off"
)

// Env chooses the environment variables captured at exec. The kernel reads
// the new program's envp array, keeps the listed variables (or all of them)
// and copies each as NAME=value, clamped; the decoder clamps values to
// MaxValueBytes exactly.
type Env struct {
	Mode  string
	Names []string
	// MaxBytes bounds the environment copied per exec (the record's share).
	MaxBytes int
	// MaxVars bounds the variables looked at per exec; a listed variable
	// further down is not seen (the event says env_truncated).
	MaxVars int
	// MaxValueBytes clamps each value.
	MaxValueBytes int
}

// DefaultEnvNames are the variables attacks use to change what a program
// loads or runs, where its traffic goes, or what a shell records:
// dynamic loader injection (LD_*, GLIBC_TUNABLES, GCONV_PATH), interpreter
// start-up hooks, proxies, and shell start-up and history settings.
var DefaultEnvNames = []string{
	"LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "LD_DEBUG", "LD_PROFILE", "GLIBC_TUNABLES",
	"GCONV_PATH", "LOCPATH", "NLSPATH", "MALLOC_CHECK_",
	"PATH", "BASH_ENV", "ENV", "SHELLOPTS", "PS4", "PROMPT_COMMAND", "IFS",
	"HISTFILE", "HISTSIZE", "HISTCONTROL",
	"PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "PERL5LIB", "PERL5OPT", "PERLLIB", "RUBYLIB", "RUBYOPT",
	"NODE_OPTIONS", "NODE_PATH", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "CLASSPATH",
	"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY",
	"SSH_CONNECTION", "SSH_ORIGINAL_COMMAND", "SUDO_USER", "SUDO_COMMAND",
}

// DefaultEnv returns the documented defaults.
func DefaultEnv() Env {
	return Env{Mode: EnvListed, Names: append([]string(nil), DefaultEnvNames...), MaxBytes: 4096, MaxVars: 256, MaxValueBytes: 256}
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

const (
	envBytesMax = int(wpWpEnvLimitWP_ENV_MAX) // the record's environment area
	envVarsMax  = int(wpWpEnvLimitWP_ENV_VARS)
	envItemMax  = int(wpWpEnvLimitWP_ENV_ITEM_MAX)
	envNameMax  = len(wpWpEnvKey{}.Name) - 2 // room for '=' and a zero
	envNamesMax = 256                        // wp_env_names entries
)

// Validate names the bad setting.
func (e Env) Validate() error {
	switch e.Mode {
	case EnvListed, EnvAll, EnvOff:
	default:
		return fmt.Errorf("exec_env.mode: %q is not %s, %s or %s", e.Mode, EnvListed, EnvAll, EnvOff)
	}
	if e.Mode == EnvOff {
		return nil
	}
	if len(e.Names) > envNamesMax {
		return fmt.Errorf("exec_env.names: %d names, at most %d", len(e.Names), envNamesMax)
	}
	for i, n := range e.Names {
		if !envName.MatchString(n) || len(n) > envNameMax {
			return fmt.Errorf("exec_env.names[%d]: %q is not a variable name of at most %d bytes", i, n, envNameMax)
		}
	}
	if e.MaxValueBytes < 1 || e.MaxValueBytes > envItemMax-1-envNameMax-2 {
		return fmt.Errorf("exec_env.max_value_bytes: %d must be between 1 and %d", e.MaxValueBytes, envItemMax-1-envNameMax-2)
	}
	if e.MaxBytes < e.itemBytes() || e.MaxBytes > envBytesMax {
		return fmt.Errorf("exec_env.max_bytes: %d must be between %d (one variable) and %d", e.MaxBytes, e.itemBytes(), envBytesMax)
	}
	if e.MaxVars < 1 || e.MaxVars > envVarsMax {
		return fmt.Errorf("exec_env.max_vars: %d must be between 1 and %d", e.MaxVars, envVarsMax)
	}
	return nil
}

// itemBytes is how much of one NAME=value the kernel copies: room for the
// longest name, '=', the value and the NUL.
func (e Env) itemBytes() int { return envNameMax + 2 + e.MaxValueBytes }

func (e Env) mode() uint32 {
	switch e.Mode {
	case EnvListed:
		return uint32(wpWpEnvModeWP_ENV_LISTED)
	case EnvAll:
		return uint32(wpWpEnvModeWP_ENV_ALL)
	}
	return uint32(wpWpEnvModeWP_ENV_OFF)
}

// envKey is the wp_env_names key of a name: "NAME=" and zeros.
func envKey(name string) wpWpEnvKey {
	var k wpWpEnvKey
	for i := 0; i < len(name); i++ {
		k.Name[i] = int8(name[i])
	}
	k.Name[len(name)] = '='
	return k
}

// applyEnv writes the listed names and returns the configuration fields.
func (s *Sensor) applyEnv(e Env, c *wpWpConfig) error {
	c.EnvMode = e.mode()
	if e.Mode == EnvOff {
		return nil
	}
	c.EnvBytes, c.EnvVars, c.EnvItemBytes = uint32(e.MaxBytes), uint32(e.MaxVars), uint32(e.itemBytes())
	if e.Mode != EnvListed {
		return nil
	}
	m := s.coll.Maps["wp_env_names"]
	for i, n := range e.Names {
		if err := m.Put(envKey(n), uint8(1)); err != nil {
			return fmt.Errorf("exec_env.names[%d]: writing %q: %w", i, n, err)
		}
	}
	return nil
}
