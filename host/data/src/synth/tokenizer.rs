//! A small byte-level BPE trained on the synthetic corpus, with Qwen's special tokens and a ChatML
//! chat template, saved as `tokenizer.json` + `tokenizer_config.json` (+ `generation_config.json`)
//! the way an HF model directory holds them.

use std::path::Path;

use anyhow::Context;
use serde_json::json;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer, TokenizerBuilder};

pub const ENDOFTEXT: &str = "<|endoftext|>";
pub const IM_START: &str = "<|im_start|>";
pub const IM_END: &str = "<|im_end|>";
pub const THINK: &str = "<think>";
pub const END_THINK: &str = "</think>";

/// ChatML, as Qwen2 instruct models render it.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// The ChatML rendering of one user turn with the generation prompt (what the policy tokenizes).
pub fn chatml_user_prompt(content: &str) -> String {
    format!("{IM_START}user\n{content}{IM_END}\n{IM_START}assistant\n")
}

/// Train a BPE of at most `vocab_size` tokens on `texts`. `<think>` / `</think>` are added tokens but
/// not special ones (as in Qwen3 / R1-distill), so decoding with special tokens skipped keeps them and
/// the reward still finds `</think>`.
pub fn train<'a>(texts: impl Iterator<Item = &'a str> + Send, vocab_size: usize) -> anyhow::Result<Tokenizer> {
    let specials: Vec<AddedToken> = [ENDOFTEXT, IM_START, IM_END].iter().map(|t| AddedToken::from(*t, true)).collect();
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut tokenizer = TokenizerBuilder::<BPE, NormalizerWrapper, ByteLevel, ByteLevel, ByteLevelDecoder>::new()
        .with_model(BPE::default())
        .with_normalizer(None)
        .with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
        .with_post_processor(Some(ByteLevel::new(false, false, true)))
        .with_decoder(Some(ByteLevelDecoder::default()))
        .build()
        .map_err(|e| anyhow::anyhow!("building the tokenizer: {e}"))?;
    tokenizer.train(&mut trainer, texts).map_err(|e| anyhow::anyhow!("training the tokenizer: {e}"))?;
    let mut tokenizer = Tokenizer::from(tokenizer);
    tokenizer.add_tokens(&[AddedToken::from(THINK, false), AddedToken::from(END_THINK, false)]);
    Ok(tokenizer)
}

/// Write `tokenizer.json`, `tokenizer_config.json` and `generation_config.json` into `dir`.
pub fn save(tokenizer: &Tokenizer, dir: &Path, model_max_length: u64) -> anyhow::Result<()> {
    let path = dir.join("tokenizer.json");
    tokenizer.save(&path, false).map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", path.display()))?;
    let id = |t: &str| tokenizer.token_to_id(t).with_context(|| format!("the tokenizer lacks {t}"));
    let mut added = serde_json::Map::new();
    for (token, special) in [(ENDOFTEXT, true), (IM_START, true), (IM_END, true), (THINK, false), (END_THINK, false)] {
        added.insert(
            id(token)?.to_string(),
            json!({"content": token, "lstrip": false, "normalized": !special, "rstrip": false, "single_word": false, "special": special}),
        );
    }
    let config = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": model_max_length,
        "chat_template": CHATML_TEMPLATE,
        "bos_token": null,
        "eos_token": IM_END,
        "pad_token": ENDOFTEXT,
        "unk_token": null,
        "add_bos_token": false,
        "added_tokens_decoder": added,
    });
    write_json(&dir.join("tokenizer_config.json"), &config)?;
    let generation = json!({
        "eos_token_id": [id(IM_END)?, id(ENDOFTEXT)?],
        "pad_token_id": id(ENDOFTEXT)?,
    });
    write_json(&dir.join("generation_config.json"), &generation)
}

fn write_json(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(value)? + "\n")
        .with_context(|| format!("{}: cannot write", path.display()))
}
