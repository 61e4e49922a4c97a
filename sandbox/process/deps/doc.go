// Package deps installs the dependencies of the process driver's services,
// each service's into a dependency directory of its own: a Node.js
// service's package.json with npm into node_modules, a Python service's
// requirements.txt with pip into a target directory (Installer.Ensure), plus
// packages an operator adds (Add, Remove; `andromeda deps add|rm`), and
// lists what is installed (List; `andromeda deps ls`). A Manager describes
// one package manager (NPM, Pip); the process driver's language table says
// which language uses which.
//
// No service-supplied code runs at install: a service names its
// dependencies by registry name and version only (no local paths, URLs, VCS
// specs or installer options; see SourceError and
// Installer.AllowAnySource), pip installs wheels only and npm runs no
// scripts. The installer runs in a jail (sandbox/jail) like a worker's,
// with a network namespace of its own with only loopback; when the registry
// is a URL, the jail's egress proxy lets it reach the registry's host and
// port and nothing else. The package holds no driver and starts no worker.
package deps
