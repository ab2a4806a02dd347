//! `longrl plugins list`, `longrl plugins inspect PATH` and `longrl plugins new NAME --kind KIND`.

use std::path::PathBuf;

use longrl_core::api::ComponentKind;

use crate::cli::GlobalArgs;
use longrl_plugins::scaffold::{CoreSource, Scaffold, core_path};
use longrl_plugins::{PluginLibrary, PluginSet, search_paths};

#[derive(clap::Subcommand, Debug)]
pub enum PluginsCommand {
    /// Every component found on the plugin search path: kind, name, version, library.
    List,
    /// The components, build versions and documented config of one library.
    Inspect { path: PathBuf },
    /// Scaffold a plugin crate to start from.
    ///
    /// Writes Cargo.toml, src/lib.rs (a working component, its documented config, the export line and
    /// a unit test) and a README. Reward, sampler and curriculum plugins build without libtorch.
    New {
        /// Crate and component name (lower-case letters, digits, `-`, `_`).
        name: String,
        /// reward | sampler | curriculum | algorithm.
        #[arg(long, value_parser = parse_kind)]
        kind: ComponentKind,
        /// Directory to create [default: ./NAME].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Depend on longrl-core by path (the `core` directory of a longrl checkout) instead of by
        /// version.
        #[arg(long)]
        core_path: Option<PathBuf>,
    },
}

fn parse_kind(text: &str) -> Result<ComponentKind, String> {
    ComponentKind::parse(text).ok_or_else(|| {
        let kinds: Vec<&str> = ComponentKind::ALL.iter().map(|k| k.as_str()).collect();
        format!("`{text}` is not a component kind ({})", kinds.join(", "))
    })
}

pub fn run(command: PluginsCommand, global: &GlobalArgs) -> anyhow::Result<()> {
    match command {
        PluginsCommand::List => {
            let config = global.load_config()?;
            let paths = search_paths(&config.plugins.paths);
            let set = PluginSet::load(&paths)?;
            print!("{}", list_table(&set));
            if set.libraries().is_empty() {
                let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                eprintln!("no plugins found; searched: {}", shown.join(", "));
            }
            Ok(())
        }
        PluginsCommand::Inspect { path } => {
            let library = PluginLibrary::load(&path)?;
            print!("{}", inspect_text(&library));
            Ok(())
        }
        PluginsCommand::New { name, kind, out, core_path: core } => {
            let core = match core {
                Some(dir) => CoreSource::Path(core_path(&dir)?),
                None => CoreSource::Version,
            };
            let out = out.unwrap_or_else(|| PathBuf::from(&name));
            let scaffold = Scaffold { name, kind, out, core };
            for path in scaffold.write()? {
                println!("created {}", path.display());
            }
            println!(
                "next: cd {} && cargo test && cargo build, then `longrl plugins inspect target/debug/lib{}.{}`",
                scaffold.out.display(),
                scaffold.name.replace('-', "_"),
                std::env::consts::DLL_EXTENSION
            );
            Ok(())
        }
    }
}

pub fn list_table(set: &PluginSet) -> String {
    let rows: Vec<[String; 4]> = set
        .components()
        .into_iter()
        .map(|(info, path)| {
            [info.kind.to_string(), info.name.clone(), info.version.clone(), path.display().to_string()]
        })
        .collect();
    let header = ["KIND".to_string(), "NAME".into(), "VERSION".into(), "LIBRARY".into()];
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

pub fn inspect_text(library: &PluginLibrary) -> String {
    let mut out = format!("library: {}\nbuilt with: {}\n", library.path().display(), library.build_info().describe());
    for c in library.components() {
        out.push_str(&format!("\n{} {} {}\n  {}\n", c.kind, c.name, c.version, c.description));
        if c.config.is_empty() {
            out.push_str("  config: none\n");
        } else {
            out.push_str("  config:\n");
            for key in &c.config {
                out.push_str(&format!("    {} = {}  # {}\n", key.key, key.default, key.doc));
            }
        }
    }
    out
}
