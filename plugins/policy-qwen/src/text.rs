//! Tokenizer (`tokenizer.json`), special tokens (`tokenizer_config.json`, `generation_config.json`)
//! and the chat template rendered like transformers' `apply_chat_template`.

use std::path::Path;

use longrl_core::api::ChatMessage;
use longrl_core::{Error, Result};
use minijinja::{Environment, Value as JinjaValue, context};
use serde_json::Value;
use tokenizers::Tokenizer;

pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";

/// A ChatML template for models whose tokenizer config has none (what `model init` writes).
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// A special token in `tokenizer_config.json`: a string or an `AddedToken` object.
pub fn special_token(config: &Value, key: &str) -> Option<String> {
    match config.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

pub fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::msg(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| Error::msg(format!("{}: invalid JSON: {e}", path.display())))
}

/// The chat template of a tokenizer config, with its special tokens.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

fn raise_exception(message: String) -> std::result::Result<JinjaValue, minijinja::Error> {
    Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, message))
}

impl ChatTemplate {
    pub fn new(template: &str, bos_token: String, eos_token: String) -> Result<ChatTemplate> {
        let mut env = Environment::new();
        // The jinja settings transformers renders chat templates with.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned("chat", template.to_string())
            .map_err(|e| Error::msg(format!("chat template does not parse: {e}")))?;
        Ok(ChatTemplate { env, bos_token, eos_token })
    }

    /// The template of `tokenizer_config` (a string, or the `default` entry of a named list).
    pub fn from_tokenizer_config(config: &Value) -> Result<Option<ChatTemplate>> {
        let template = match config.get("chat_template") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template"))
                .and_then(Value::as_str)
                .ok_or_else(|| Error::msg("tokenizer_config.json: `chat_template` list has no `default` entry"))?
                .to_string(),
            Some(other) => {
                return Err(Error::msg(format!("tokenizer_config.json: `chat_template` is {other}")));
            }
        };
        let bos = special_token(config, "bos_token").unwrap_or_default();
        let eos = special_token(config, "eos_token").unwrap_or_default();
        ChatTemplate::new(&template, bos, eos).map(Some)
    }

    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let template = self.env.get_template("chat").map_err(|e| Error::msg(format!("chat template: {e}")))?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token,
                eos_token => self.eos_token,
            })
            .map_err(|e| Error::msg(format!("chat template: {e}")))
    }
}

/// Tokenizer, template and the ids generation stops on.
pub struct TextCodec {
    pub tokenizer: Tokenizer,
    pub template: Option<ChatTemplate>,
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
    pub bos_token_id: Option<u32>,
    /// The source files, written back verbatim on save.
    pub tokenizer_json: Vec<u8>,
    pub tokenizer_config: Value,
    pub generation_config: Option<Value>,
}

fn ids_of(value: Option<&Value>) -> Vec<u32> {
    match value {
        Some(Value::Number(n)) => n.as_u64().map(|n| vec![n as u32]).unwrap_or_default(),
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_u64).map(|n| n as u32).collect(),
        _ => Vec::new(),
    }
}

impl TextCodec {
    /// Read `tokenizer.json` and, when present beside it, the tokenizer and generation configs.
    /// `model_config` (config.json) adds its `eos_token_id` too.
    pub fn load(tokenizer_path: &Path, config_dir: &Path, model_config: Option<&Value>) -> Result<TextCodec> {
        let tokenizer_json =
            std::fs::read(tokenizer_path).map_err(|e| Error::msg(format!("{}: {e}", tokenizer_path.display())))?;
        let tokenizer = Tokenizer::from_bytes(&tokenizer_json)
            .map_err(|e| Error::msg(format!("{}: cannot load tokenizer: {e}", tokenizer_path.display())))?;
        let tc_path = config_dir.join(TOKENIZER_CONFIG_FILE);
        let tokenizer_config = if tc_path.exists() { read_json(&tc_path)? } else { Value::Object(Default::default()) };
        let gc_path = config_dir.join(GENERATION_CONFIG_FILE);
        let generation_config = if gc_path.exists() { Some(read_json(&gc_path)?) } else { None };
        let template =
            ChatTemplate::from_tokenizer_config(&tokenizer_config).map_err(|e| e.context(tc_path.display()))?;
        let token_id = |key: &str| special_token(&tokenizer_config, key).and_then(|t| tokenizer.token_to_id(&t));
        let mut eos = ids_of(generation_config.as_ref().and_then(|g| g.get("eos_token_id")));
        eos.extend(ids_of(model_config.and_then(|c| c.get("eos_token_id"))));
        eos.extend(token_id("eos_token"));
        let mut eos_token_ids = Vec::new();
        for id in eos {
            if !eos_token_ids.contains(&id) {
                eos_token_ids.push(id);
            }
        }
        let pad_token_id = token_id("pad_token")
            .or_else(|| ids_of(generation_config.as_ref().and_then(|g| g.get("pad_token_id"))).first().copied());
        let bos_token_id = token_id("bos_token")
            .or_else(|| ids_of(generation_config.as_ref().and_then(|g| g.get("bos_token_id"))).first().copied());
        Ok(TextCodec {
            tokenizer,
            template,
            eos_token_ids,
            pad_token_id,
            bos_token_id,
            tokenizer_json,
            tokenizer_config,
            generation_config,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self.tokenizer.encode(text, add_special_tokens).map_err(|e| Error::msg(format!("tokenizer: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.tokenizer.decode(ids, skip_special_tokens).map_err(|e| Error::msg(format!("tokenizer: {e}")))
    }

    pub fn render_chat(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        match &self.template {
            Some(t) => t.render(messages, add_generation_prompt),
            None => Err(Error::msg("the model's tokenizer_config.json has no chat_template")),
        }
    }

    /// Write tokenizer.json, tokenizer_config.json and generation_config.json into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::write(dir.join(TOKENIZER_FILE), &self.tokenizer_json)?;
        std::fs::write(dir.join(TOKENIZER_CONFIG_FILE), serde_json::to_string_pretty(&self.tokenizer_config)?)?;
        let generation = match &self.generation_config {
            Some(g) => g.clone(),
            None => {
                let mut g = serde_json::json!({"_from_model_config": true});
                if let Some(bos) = self.bos_token_id {
                    g["bos_token_id"] = bos.into();
                }
                match self.eos_token_ids.as_slice() {
                    [] => {}
                    [one] => g["eos_token_id"] = (*one).into(),
                    many => g["eos_token_id"] = many.into(),
                }
                g
            }
        };
        std::fs::write(dir.join(GENERATION_CONFIG_FILE), serde_json::to_string_pretty(&generation)?)?;
        Ok(())
    }
}
