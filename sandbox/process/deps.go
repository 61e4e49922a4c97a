package process

import (
	"path/filepath"

	"github.com/andromeda-runner/andromeda/sandbox/process/deps"
	"github.com/andromeda-runner/andromeda/sandbox/process/lang"
)

// installer is the driver's dependency installer: every service's
// dependency directories are under WorkDir/deps. It probes the host.
func (d *Driver) installer() *deps.Installer {
	return &deps.Installer{
		Dir:            filepath.Join(d.cfg.WorkDir, "deps"),
		Jail:           d.host().jail,
		Registries:     d.cfg.Registries,
		AllowAnySource: d.cfg.AllowAnyDepSource,
		Timeout:        d.cfg.InstallTimeout,
		Memory:         d.cfg.InstallMemory,
		Scratch:        d.cfg.Scratch,
		Files:          d.cfg.Files,
		Logger:         d.cfg.Logger,
	}
}

// ListDeps lists the packages installed in service's dependency directory
// for every language, sorted by language and name: for Node.js the
// top-level packages of its node_modules, for Python the distributions in
// its target directory. A service without dependencies has none. Safe for
// concurrent use; it only reads.
func (d *Driver) ListDeps(service string) ([]deps.Dep, error) {
	in := deps.Installer{Dir: filepath.Join(d.cfg.WorkDir, "deps")}
	return in.List(service, lang.Managers()...)
}
