//! What a component asks for, read before it is compiled: its API version and its imports.
//!
//! Why the imports: a component can call only what it imports, and its imports are fixed in
//! its binary. Reading the top-level import section therefore tells exactly which host
//! interfaces it could ever reach, so refusing an import here is a complete guard (the linker
//! and the deny-all WASI context behind it are a second line).
//!
//! Why the version comes from the imports: the world `facility-adapter` exports bare functions
//! whose names carry no version, but every one of them uses records of the interface
//! `tsunagi:clinic/types`, which the component imports as `tsunagi:clinic/types@X.Y.Z`. That
//! name is written by the guest's bindings generator from the WIT it was built against, so it
//! is the API version (semver: 1.x is compatible with the host's 1.0).
//!
//! Why a 1.x component runs against the host's 1.0 bindings: the contract interface holds
//! types only, so the linker has nothing to resolve under `types@1.x`; the host finds the
//! world's exports by their bare names and checks their signatures by structure. A compatible
//! addition (a new type, a new export) is simply not looked at (the `v1-1` test guest).

use std::fmt;

use wasmtime::wasmparser::{ComponentTypeRef, Parser, Payload};

use super::{Capability, LoadError};

/// The API major version this host runs (`wit/v1`).
pub const SUPPORTED_MAJOR: u64 = 1;

/// The package every plugin's contract import belongs to.
const CONTRACT_PACKAGE: &str = "tsunagi:clinic";

/// An API version read from a component (`tsunagi:clinic@X.Y.Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion {
    /// Major: a different one is a different contract.
    pub major: u64,
    /// Minor: compatible additions.
    pub minor: u64,
    /// Patch.
    pub patch: u64,
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl ApiVersion {
    fn parse(s: &str) -> Option<Self> {
        // Pre-release or build suffixes (`1.1.0-draft`) are not released contracts.
        let mut parts = s.split('.').map(|p| p.parse::<u64>().ok());
        let v = ApiVersion {
            major: parts.next()??,
            minor: parts.next()??,
            patch: parts.next()??,
        };
        parts.next().is_none().then_some(v)
    }
}

/// What a component imports, sorted into what the host decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The contract version.
    pub api: ApiVersion,
    /// Every top-level import name, as written.
    pub imports: Vec<String>,
}

/// How one import is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// The contract itself.
    Contract,
    /// What std pulls in for a guest that does no I/O; backed by a deny-all context.
    Always,
    /// Needs this capability.
    Needs(Capability),
    /// Never.
    Never,
}

/// Sorts an import name such as `wasi:filesystem/types@0.2.6`.
fn gate(import: &str) -> Gate {
    let unversioned = import.split('@').next().unwrap_or(import);
    let Some((package, interface)) = unversioned.split_once('/') else {
        return Gate::Never;
    };
    match package {
        CONTRACT_PACKAGE => Gate::Contract,
        // std's runtime start-up and panic path: exit, the (empty) environment and arguments,
        // and stdio streams the deny-all context closes (stdin) or discards (stdout, stderr).
        "wasi:cli" => match interface {
            "environment" | "exit" | "stdin" | "stdout" | "stderr" | "terminal-input"
            | "terminal-output" | "terminal-stdin" | "terminal-stdout" | "terminal-stderr" => {
                Gate::Always
            }
            _ => Gate::Never,
        },
        // The stream and error resources stdio hands out.
        "wasi:io" => match interface {
            "error" | "poll" | "streams" => Gate::Always,
            _ => Gate::Never,
        },
        "wasi:clocks" => Gate::Needs(Capability::Clocks),
        "wasi:random" => Gate::Needs(Capability::Random),
        "wasi:filesystem" => Gate::Needs(Capability::Filesystem),
        "wasi:sockets" => Gate::Needs(Capability::Sockets),
        _ => Gate::Never,
    }
}

/// How much an ungranted capability matters, for choosing which import to name.
fn weight(c: Capability) -> u8 {
    match c {
        Capability::Clocks => 0,
        Capability::Random => 1,
        Capability::Filesystem => 2,
        Capability::Sockets => 3,
    }
}

/// Reads a component's top-level imports and checks them against what `plugin` was granted.
pub fn inspect(
    plugin: &str,
    bytes: &[u8],
    granted: &std::collections::BTreeSet<Capability>,
) -> Result<Inspection, LoadError> {
    let imports = top_level_imports(bytes)?;
    let mut api = None;
    let mut refused = None;
    for import in &imports {
        match gate(import) {
            Gate::Contract => {
                let version = import
                    .split_once('@')
                    .and_then(|(_, v)| ApiVersion::parse(v))
                    .ok_or(LoadError::NoApiVersion)?;
                // All contract imports come from one package version; keep the highest seen
                // so a mixed component cannot hide a v2 import behind a v1 one.
                api = api.max(Some(version));
            }
            Gate::Always => {}
            Gate::Needs(capability) if granted.contains(&capability) => {}
            Gate::Needs(capability) => {
                // Name the weightiest refused import (a file-system import outranks the
                // clock std pulls in beside it), so the message says what matters.
                if refused
                    .is_none_or(|(c, _): (Capability, &String)| weight(capability) > weight(c))
                {
                    refused = Some((capability, import));
                }
            }
            Gate::Never => {
                return Err(LoadError::Forbidden {
                    plugin: plugin.to_string(),
                    import: import.clone(),
                })
            }
        }
    }
    if let Some((capability, import)) = refused {
        return Err(LoadError::NotGranted {
            plugin: plugin.to_string(),
            import: import.clone(),
            capability,
        });
    }
    let api = api.ok_or(LoadError::NoApiVersion)?;
    if api.major != SUPPORTED_MAJOR {
        return Err(LoadError::UnsupportedApi {
            found: api,
            supported: SUPPORTED_MAJOR,
        });
    }
    Ok(Inspection { api, imports })
}

/// The import names of the outermost component (nested modules' imports are satisfied
/// inside the component and reach nothing of the host).
fn top_level_imports(bytes: &[u8]) -> Result<Vec<String>, LoadError> {
    let malformed =
        |e: wasmtime::wasmparser::BinaryReaderError| LoadError::Malformed(e.to_string());
    if !Parser::is_component(bytes) {
        return Err(LoadError::Malformed(
            "a core module, not a component".to_string(),
        ));
    }
    let mut depth = 0usize;
    let mut names = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(malformed)? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    let import = import.map_err(malformed)?;
                    // A type import (the contract's records, re-exported at the world's root
                    // by `use`) names a type, not anything callable: it reaches nothing.
                    if !matches!(import.ty, ComponentTypeRef::Type(_)) {
                        names.push(import.name.name.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_sorts_imports_into_contract_default_capability_and_never() {
        for (name, expected) in [
            ("tsunagi:clinic/types@1.0.0", Gate::Contract),
            ("wasi:cli/environment@0.2.6", Gate::Always),
            ("wasi:cli/stderr@0.2.0", Gate::Always),
            ("wasi:io/streams@0.2.6", Gate::Always),
            (
                "wasi:clocks/wall-clock@0.2.6",
                Gate::Needs(Capability::Clocks),
            ),
            (
                "wasi:random/insecure-seed@0.2.6",
                Gate::Needs(Capability::Random),
            ),
            (
                "wasi:filesystem/types@0.2.6",
                Gate::Needs(Capability::Filesystem),
            ),
            ("wasi:sockets/tcp@0.2.6", Gate::Needs(Capability::Sockets)),
            ("wasi:http/outgoing-handler@0.2.6", Gate::Never),
            ("wasi:cli/run@0.2.6", Gate::Never),
            ("evil", Gate::Never),
        ] {
            assert_eq!(gate(name), expected, "{name}");
        }
    }

    #[test]
    fn it_reads_semver_and_refuses_suffixes() {
        assert_eq!(
            ApiVersion::parse("1.2.3"),
            Some(ApiVersion {
                major: 1,
                minor: 2,
                patch: 3
            })
        );
        assert_eq!(ApiVersion::parse("1.0.0-draft"), None);
        assert_eq!(ApiVersion::parse("1.0"), None);
        assert_eq!(ApiVersion::parse("1.0.0.0"), None);
    }

    #[test]
    fn it_refuses_a_core_module() {
        let core = b"\0asm\x01\0\0\0";
        assert!(matches!(
            inspect("x", core, &Default::default()),
            Err(LoadError::Malformed(_))
        ));
    }
}
