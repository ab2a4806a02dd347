//! `longrl plugins list` and `longrl plugins inspect PATH`.

use std::path::PathBuf;

use crate::cli::GlobalArgs;
use longrl_plugins::{PluginLibrary, PluginSet, search_paths};

#[derive(clap::Subcommand, Debug)]
pub enum PluginsCommand {
    /// Every component found on the plugin search path: kind, name, version, library.
    List,
    /// The components, build versions and documented config of one library.
    Inspect { path: PathBuf },
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
    let b = library.build_info();
    let mut out = format!(
        "library: {}\nbuilt with: longrl ABI v{} (longrl-core {}), tch {}, libtorch {}\n",
        library.path().display(),
        b.abi_version,
        b.core_version,
        b.tch_version,
        b.libtorch_version
    );
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
