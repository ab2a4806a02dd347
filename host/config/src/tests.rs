use std::io::Write;

use super::*;

fn write_toml(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

fn load(file: Option<&Path>, overrides: &[&str]) -> anyhow::Result<Config> {
    Config::load(&ConfigSources {
        file: file.map(Path::to_path_buf),
        overrides: overrides.iter().map(|s| s.to_string()).collect(),
    })
}

#[test]
fn defaults_alone_are_a_valid_config() {
    let config = load(None, &[]).unwrap();
    assert_eq!(config, Config::default());
}

#[test]
fn layers_apply_in_order_file_then_set() {
    let file = write_toml("seed = 5\ndevice = \"cpu\"\n[policy]\nname = \"qwen\"\nconfig = { model = \"a\" }\n");
    let config = load(Some(file.path()), &[]).unwrap();
    assert_eq!(config.seed, 5);
    assert_eq!(config.policy.config["model"], "a");
    let config = load(Some(file.path()), &["seed=9", "policy.config.model=b", "train.lr=1e-5"]).unwrap();
    assert_eq!(config.seed, 9);
    assert_eq!(config.policy.config["model"], "b");
    assert_eq!(config.train.optim.lr, 1e-5);
    // Last --set wins.
    let config = load(None, &["seed=1", "seed=2"]).unwrap();
    assert_eq!(config.seed, 2);
}

#[test]
fn unknown_key_in_file_names_key_and_file() {
    let file = write_toml("seed = 1\n[train]\nlearning_rate = 3\n");
    let err = load(Some(file.path()), &[]).unwrap_err().to_string();
    assert!(err.contains("learning_rate"), "{err}");
    assert!(err.contains(&file.path().display().to_string()), "{err}");
}

#[test]
fn unknown_key_in_set_names_the_flag() {
    let err = load(None, &["bogus.x=1"]).unwrap_err().to_string();
    assert!(err.contains("bogus") && err.contains("--set bogus.x=1"), "{err}");
}

#[test]
fn bad_value_names_the_key() {
    let err = load(None, &["device=gpu7"]).unwrap_err().to_string();
    assert!(err.contains("device") && err.contains("gpu7"), "{err}");
    let err = load(None, &["seed=\"many\""]).unwrap_err().to_string();
    assert!(err.contains("seed"), "{err}");
}

#[test]
fn malformed_set_flags_are_rejected() {
    assert!(parse_override("novalue").is_err());
    assert!(parse_override("a..b=1").is_err());
    assert_eq!(parse_override("a.b=[1, 2]").unwrap().1, toml::Value::Array(vec![1.into(), 2.into()]));
    assert_eq!(parse_override("a=hello world").unwrap().1, toml::Value::String("hello world".into()));
}

#[test]
fn missing_config_file_is_an_error_naming_it() {
    let err = load(Some(Path::new("/nonexistent/run.toml")), &[]).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/run.toml"), "{err}");
}

#[test]
fn shown_config_round_trips() {
    let config = load(None, &["seed=4", "policy.config.model=m"]).unwrap();
    let text = config.to_toml().unwrap();
    let file = write_toml(&text);
    assert_eq!(load(Some(file.path()), &[]).unwrap(), config);
}

#[test]
fn set_reaches_into_an_array_element_by_index() {
    let file = write_toml(
        "[curriculum]\nname = \"phased\"\n[[curriculum.config.phases]]\nname = \"short\"\nsteps = 20\n\
         [[curriculum.config.phases]]\nname = \"long\"\nsteps = 20\n",
    );
    let config =
        load(Some(file.path()), &["curriculum.config.phases.1.steps=3", "curriculum.config.phases.0.extra.max=7"])
            .unwrap();
    let phases = config.curriculum.config["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 2, "{phases:?}");
    assert_eq!(phases[0]["steps"], 20);
    assert_eq!(phases[0]["extra"]["max"], 7);
    assert_eq!((phases[1]["name"].as_str(), phases[1]["steps"].as_i64()), (Some("long"), Some(3)));
    // Array elements of typed sections too; a table key that looks like a number stays a key.
    let config = load(None, &["reward.components.0.config.strict=true", "policy.config.7=x"]).unwrap();
    assert_eq!(config.reward.components[0].name, "rule");
    assert_eq!(config.reward.components[0].config["strict"], true);
    assert_eq!(config.policy.config["7"], "x");
    // Out of range names the flag and the size.
    let err = load(Some(file.path()), &["curriculum.config.phases.2.steps=1"]).unwrap_err().to_string();
    assert!(err.contains("--set `curriculum.config.phases.2.steps=1`") && err.contains("2 element"), "{err}");
}

#[test]
fn optimizer_keys_are_flat_in_both_sections() {
    let file = write_toml("[sft]\nlr = 0.1\nschedule = \"cosine\"\n[train]\nadam_eps = 1e-6\nwarmup_steps = 3\n");
    let config = load(Some(file.path()), &[]).unwrap();
    assert_eq!((config.sft.optim.lr, config.sft.optim.schedule), (0.1, LrSchedule::Cosine));
    assert_eq!((config.train.optim.eps, config.train.optim.warmup_steps), (1e-6, 3));
    // Keys left out keep their section's default (the two differ in `lr`).
    assert_eq!((config.train.optim.lr, config.sft.optim.grad_clip), (2e-6, 1.0));
    let text = config.to_toml().unwrap();
    assert!(text.contains("\nadam_eps = ") && !text.contains("optim"), "{text}");
    // Unknown keys and bad values are still errors that name them and their layer.
    let err = load(Some(file.path()), &["sft.learning_rate=1"]).unwrap_err().to_string();
    assert!(err.contains("learning_rate") && err.contains("--set sft.learning_rate=1"), "{err}");
    let err = load(None, &["train.lr=\"fast\""]).unwrap_err().to_string();
    assert!(err.contains("`train.lr`") && err.contains("fast") && err.contains("--set train.lr"), "{err}");
    let bad = write_toml("[train]\nbeta1 = \"high\"\n");
    let err = load(Some(bad.path()), &[]).unwrap_err().to_string();
    assert!(
        err.contains("`train.beta1`") && err.contains("high") && err.contains(&bad.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn batch_schedule_keys_in_the_algorithm_table_say_where_they_moved() {
    let file =
        write_toml("[algorithm]\nname = \"grpo\"\n[algorithm.config]\nclip_high = 0.28\nmini_batch_prompts = 4\n");
    let error = load(Some(file.path()), &[]).unwrap_err().to_string();
    assert!(
        error.contains("`algorithm.config.mini_batch_prompts`") && error.contains("`train.mini_batch_prompts`"),
        "{error}"
    );
    let error =
        load(None, &["algorithm.config.dynamic_sampling=false", "algorithm.config.epochs=2"]).unwrap_err().to_string();
    assert!(
        error.contains("`train.dynamic_sampling`, `train.epochs`")
            || error.contains("`train.epochs`, `train.dynamic_sampling`"),
        "{error}"
    );
    // In `[train]` they are keys like any other.
    let config =
        load(None, &["train.mini_batch_prompts=4", "train.dynamic_sampling=false", "train.mask_truncated=true"])
            .unwrap();
    assert_eq!(
        (config.train.mini_batch_prompts, config.train.dynamic_sampling, config.train.mask_truncated),
        (4, false, true)
    );
    let bad = TrainConfig { max_gen_batches: 0, ..TrainConfig::default() };
    assert!(bad.validate(&SftConfig::default()).unwrap_err().to_string().contains("train.max_gen_batches"));
}

#[test]
fn dist_section_reads_and_refuses_what_is_not_offered() {
    let config =
        load(None, &["dist.backend=gloo", "dist.timeout_s=30", "dist.zero_stage=2", "dist.offload=optimizer"]).unwrap();
    assert_eq!(
        config.dist,
        DistConfig {
            backend: DistBackend::Gloo,
            timeout_s: 30,
            zero_stage: ZeroStage::Two,
            offload: Offload::Optimizer
        }
    );
    assert_eq!(config.dist.backend.as_str(), "gloo");
    let err = load(None, &["dist.zero_stage=1"]).unwrap_err().to_string();
    assert!(err.contains("dist.zero_stage") && err.contains("stage 1 is not offered"), "{err}");
    let err = load(None, &["dist.backend=mpi"]).unwrap_err().to_string();
    assert!(err.contains("dist.backend"), "{err}");
    let err = load(None, &["dist.timeout_s=0"]).unwrap_err().to_string();
    assert!(err.contains("dist.timeout_s"), "{err}");
}

#[test]
fn rollout_section_loads_and_its_errors_name_the_key() {
    let file = write_toml(
        "[rollout]\nbackend = \"vllm\"\nurls = [\"http://a:8000\", \"http://b:8000\"]\n[rollout.weight_sync]\ndir = \"/shared/w\"\n",
    );
    let config = load(Some(file.path()), &[]).unwrap();
    assert_eq!(config.rollout.servers(), vec!["http://a:8000", "http://b:8000"]);
    let error = load(Some(file.path()), &["rollout.concurrency=0"]).unwrap_err().to_string();
    assert!(error.contains("`rollout.concurrency`"), "{error}");
    let error = load(None, &["rollout.backend=\"sglang\""]).unwrap_err().to_string();
    assert!(error.contains("`rollout.url`"), "{error}");
}
