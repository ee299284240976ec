//! The `semantic` embedder: all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT sentence encoder,
//! Apache-2.0), run in-process from its safetensors weights. No network at run time: the
//! weights come from the model cache that `edgeswarm models install` fills (see
//! [`models_dir`]).
//!
//! The forward pass is written out here (embeddings, 6 × self-attention + GELU feed-forward
//! with post-LayerNorm, mean pooling, L2 normalisation: what sentence-transformers runs for
//! this model); the matrix products go to `matrixmultiply` (SIMD sgemm). Tokens of every
//! text in a batch are stacked for the linear layers (they act per token), so a batch of
//! short texts costs a few large products; attention runs per text, so there is no
//! padding. The tokenizer is BERT's uncased WordPiece (basic split on whitespace and
//! punctuation, lower case, accents stripped, greedy longest-match word pieces).

use crate::embed::Embedder;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The model `edgeswarm models install` installs when no name is given, and the one
/// embedder `semantic` loads.
pub const DEFAULT_MODEL: &str = "all-minilm-l6-v2";
/// The environment variable that overrides the model cache directory.
pub const MODELS_ENV: &str = "EDGESWARM_MODELS";
/// Files a model directory must hold.
pub const MODEL_FILES: [&str; 3] = ["config.json", "model.safetensors", "vocab.txt"];
/// Longest input in tokens, [CLS] and [SEP] included (the model was trained on 256).
pub const MAX_TOKENS: usize = 256;

/// Where models are cached: `$EDGESWARM_MODELS`, else `$XDG_CACHE_HOME/edgeswarm/models`,
/// else `~/.cache/edgeswarm/models`.
pub fn models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os(MODELS_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("edgeswarm").join("models");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("edgeswarm").join("models")
}

/// The directory of an installed model `name` (it may not exist).
pub fn model_path(name: &str) -> PathBuf {
    models_dir().join(name)
}

/// Whether every file of model `name` is in the cache.
pub fn is_installed(name: &str) -> bool {
    let d = model_path(name);
    MODEL_FILES.iter().all(|f| d.join(f).is_file())
}

/// One linear layer: weight `[out, in]` (PyTorch layout), bias `[out]`.
struct Linear {
    w: Vec<f32>,
    b: Vec<f32>,
    inp: usize,
    out: usize,
}

impl Linear {
    /// `x` is `[n, inp]`; returns `[n, out]` = x Wᵀ + b.
    fn apply(&self, x: &[f32], n: usize) -> Vec<f32> {
        let mut y = vec![0f32; n * self.out];
        for row in y.chunks_exact_mut(self.out) {
            row.copy_from_slice(&self.b);
        }
        // SAFETY: the slices hold n×inp, out×inp and n×out values, and the strides below
        // stay inside them (row-major x and y, W read transposed).
        unsafe {
            matrixmultiply::sgemm(
                n,
                self.inp,
                self.out,
                1.0,
                x.as_ptr(),
                self.inp as isize,
                1,
                self.w.as_ptr(),
                1,
                self.inp as isize,
                1.0,
                y.as_mut_ptr(),
                self.out as isize,
                1,
            );
        }
        y
    }
}

/// LayerNorm weights.
struct Norm {
    g: Vec<f32>,
    b: Vec<f32>,
}

impl Norm {
    fn apply(&self, x: &mut [f32], eps: f32) {
        let h = self.g.len();
        for row in x.chunks_exact_mut(h) {
            let mean = row.iter().sum::<f32>() / h as f32;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / h as f32;
            let inv = 1.0 / (var + eps).sqrt();
            for ((v, g), b) in row.iter_mut().zip(&self.g).zip(&self.b) {
                *v = (*v - mean) * inv * g + b;
            }
        }
    }
}

/// One encoder layer.
struct Layer {
    /// Query, key and value projections fused into one `[3h, h]` product.
    qkv: Linear,
    attn_out: Linear,
    attn_norm: Norm,
    up: Linear,
    down: Linear,
    out_norm: Norm,
}

/// A BERT sentence encoder with mean pooling (all-MiniLM-L6-v2's architecture).
pub struct SemanticEmbedder {
    /// `model-name/v1`: names the weights and this pooling, so vectors are rebuilt when
    /// either changes.
    id: String,
    vocab: HashMap<String, u32>,
    cls: u32,
    sep: u32,
    unk: u32,
    hidden: usize,
    heads: usize,
    eps: f32,
    word: Vec<f32>,
    pos: Vec<f32>,
    max_pos: usize,
    token_type: Vec<f32>,
    emb_norm: Norm,
    layers: Vec<Layer>,
}

impl std::fmt::Debug for SemanticEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SemanticEmbedder")
            .field("id", &self.id)
            .field("layers", &self.layers.len())
            .field("hidden", &self.hidden)
            .finish()
    }
}

/// The tensors of a safetensors file (F32 only), by name.
struct Tensors {
    data: Vec<u8>,
    index: HashMap<String, (Vec<usize>, usize, usize)>,
}

impl Tensors {
    fn read(path: &Path) -> Result<Tensors, String> {
        let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if data.len() < 8 {
            return Err(format!("{}: not a safetensors file", path.display()));
        }
        let n = u64::from_le_bytes(data[..8].try_into().unwrap_or_default()) as usize;
        let header = data
            .get(8..8 + n)
            .ok_or_else(|| format!("{}: truncated safetensors header", path.display()))?;
        let h: serde_json::Value =
            serde_json::from_slice(header).map_err(|e| format!("{}: bad safetensors header: {e}", path.display()))?;
        let mut index = HashMap::new();
        for (name, t) in h.as_object().into_iter().flatten() {
            if name == "__metadata__" || t["dtype"] != "F32" {
                continue;
            }
            let usizes = |v: &serde_json::Value| -> Vec<usize> {
                v.as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|d| d.as_u64())
                    .map(|d| d as usize)
                    .collect()
            };
            let (shape, off) = (usizes(&t["shape"]), usizes(&t["data_offsets"]));
            if off.len() != 2 || off[0] > off[1] || 8 + n + off[1] > data.len() {
                return Err(format!("{}: tensor {name} lies outside the file", path.display()));
            }
            index.insert(name.clone(), (shape, 8 + n + off[0], 8 + n + off[1]));
        }
        Ok(Tensors { data, index })
    }

    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        let (s, a, b) = self.index.get(name).ok_or_else(|| format!("the weights have no tensor `{name}`"))?;
        if s != shape || (b - a) != shape.iter().product::<usize>() * 4 {
            return Err(format!("tensor `{name}` has shape {s:?}, expected {shape:?}"));
        }
        Ok(self.data[*a..*b]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    fn linear(&self, prefix: &str, out: usize, inp: usize) -> Result<Linear, String> {
        Ok(Linear {
            w: self.get(&format!("{prefix}.weight"), &[out, inp])?,
            b: self.get(&format!("{prefix}.bias"), &[out])?,
            inp,
            out,
        })
    }

    fn norm(&self, prefix: &str, h: usize) -> Result<Norm, String> {
        Ok(Norm {
            g: self.get(&format!("{prefix}.weight"), &[h])?,
            b: self.get(&format!("{prefix}.bias"), &[h])?,
        })
    }
}

impl SemanticEmbedder {
    /// Loads the installed default model ([`DEFAULT_MODEL`]) from the cache; the error
    /// says to run `edgeswarm models install` when it is not there.
    pub fn load_default() -> Result<SemanticEmbedder, String> {
        SemanticEmbedder::load_from_cache(&models_dir())
    }

    /// Loads [`DEFAULT_MODEL`] from the model cache `cache` (what [`models_dir`] gives).
    pub fn load_from_cache(cache: &Path) -> Result<SemanticEmbedder, String> {
        let dir = cache.join(DEFAULT_MODEL);
        if !MODEL_FILES.iter().all(|f| dir.join(f).is_file()) {
            return Err(format!(
                "the semantic model {DEFAULT_MODEL} is not installed in {} (set {MODELS_ENV} to use another directory): run `edgeswarm models install` to fetch it, \
                 or choose embedder \"none\" (lexical search, the default) or \"hash\"",
                dir.display()
            ));
        }
        SemanticEmbedder::load(&dir, DEFAULT_MODEL)
    }

    /// Loads a BERT model from `dir` (config.json, model.safetensors, vocab.txt).
    pub fn load(dir: &Path, name: &str) -> Result<SemanticEmbedder, String> {
        let cfg_path = dir.join("config.json");
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&cfg_path).map_err(|e| format!("{}: {e}", cfg_path.display()))?)
                .map_err(|e| format!("{}: {e}", cfg_path.display()))?;
        let num = |k: &str| {
            cfg[k]
                .as_u64()
                .map(|v| v as usize)
                .ok_or_else(|| format!("{}: no `{k}`", cfg_path.display()))
        };
        let (hidden, heads, n_layers, inter, max_pos, vocab_size) = (
            num("hidden_size")?,
            num("num_attention_heads")?,
            num("num_hidden_layers")?,
            num("intermediate_size")?,
            num("max_position_embeddings")?,
            num("vocab_size")?,
        );
        let types = num("type_vocab_size").unwrap_or(2);
        let eps = cfg["layer_norm_eps"].as_f64().unwrap_or(1e-12) as f32;
        if heads == 0 || hidden % heads != 0 || cfg["hidden_act"].as_str().unwrap_or("gelu") != "gelu" {
            return Err(format!("{}: unsupported model shape or activation", cfg_path.display()));
        }
        let vocab_path = dir.join("vocab.txt");
        let vocab_text = std::fs::read_to_string(&vocab_path).map_err(|e| format!("{}: {e}", vocab_path.display()))?;
        let vocab: HashMap<String, u32> = vocab_text.lines().enumerate().map(|(i, w)| (w.to_string(), i as u32)).collect();
        let id_of = |t: &str| {
            vocab
                .get(t)
                .copied()
                .ok_or_else(|| format!("{}: no `{t}` token", vocab_path.display()))
        };
        let (cls, sep, unk) = (id_of("[CLS]")?, id_of("[SEP]")?, id_of("[UNK]")?);
        let t = Tensors::read(&dir.join("model.safetensors"))?;
        // Some exports prefix every name with `bert.`.
        let p = if t.index.contains_key("bert.embeddings.word_embeddings.weight") {
            "bert."
        } else {
            ""
        };
        let mut layers = Vec::with_capacity(n_layers);
        for i in 0..n_layers {
            let l = format!("{p}encoder.layer.{i}");
            let (q, k, v) = (
                t.linear(&format!("{l}.attention.self.query"), hidden, hidden)?,
                t.linear(&format!("{l}.attention.self.key"), hidden, hidden)?,
                t.linear(&format!("{l}.attention.self.value"), hidden, hidden)?,
            );
            layers.push(Layer {
                qkv: Linear {
                    w: [q.w, k.w, v.w].concat(),
                    b: [q.b, k.b, v.b].concat(),
                    inp: hidden,
                    out: 3 * hidden,
                },
                attn_out: t.linear(&format!("{l}.attention.output.dense"), hidden, hidden)?,
                attn_norm: t.norm(&format!("{l}.attention.output.LayerNorm"), hidden)?,
                up: t.linear(&format!("{l}.intermediate.dense"), inter, hidden)?,
                down: t.linear(&format!("{l}.output.dense"), hidden, inter)?,
                out_norm: t.norm(&format!("{l}.output.LayerNorm"), hidden)?,
            });
        }
        Ok(SemanticEmbedder {
            id: format!("{name}/mean-v1"),
            cls,
            sep,
            unk,
            hidden,
            heads,
            eps,
            word: t.get(&format!("{p}embeddings.word_embeddings.weight"), &[vocab_size, hidden])?,
            pos: t.get(&format!("{p}embeddings.position_embeddings.weight"), &[max_pos, hidden])?,
            max_pos,
            token_type: t.get(&format!("{p}embeddings.token_type_embeddings.weight"), &[types, hidden])?,
            emb_norm: t.norm(&format!("{p}embeddings.LayerNorm"), hidden)?,
            layers,
            vocab,
        })
    }

    /// Token ids of `text`: [CLS], word pieces (cut to fit), [SEP].
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        let max = MAX_TOKENS.min(self.max_pos);
        let mut ids = vec![self.cls];
        'words: for word in basic_split(text) {
            for id in self.word_pieces(&word) {
                if ids.len() + 1 >= max {
                    break 'words;
                }
                ids.push(id);
            }
        }
        ids.push(self.sep);
        ids
    }

    fn word_pieces(&self, word: &str) -> Vec<u32> {
        let chars: Vec<char> = word.chars().collect();
        if chars.len() > 100 {
            return vec![self.unk];
        }
        let mut out = Vec::new();
        let mut start = 0;
        while start < chars.len() {
            let mut end = chars.len();
            let mut found = None;
            while start < end {
                let mut piece: String = chars[start..end].iter().collect();
                if start > 0 {
                    piece.insert_str(0, "##");
                }
                if let Some(&id) = self.vocab.get(&piece) {
                    found = Some(id);
                    break;
                }
                end -= 1;
            }
            match found {
                Some(id) => out.push(id),
                None => return vec![self.unk],
            }
            start = end;
        }
        out
    }

    /// Embeds a batch: one L2-normalised mean-pooled vector per text.
    pub fn encode(&self, texts: &[&str]) -> Vec<Vec<f32>> {
        let h = self.hidden;
        let seqs: Vec<Vec<u32>> = texts.iter().map(|t| self.tokenize(t)).collect();
        let n: usize = seqs.iter().map(Vec::len).sum();
        // Embeddings: word + position + token type 0, then LayerNorm.
        let mut x = Vec::with_capacity(n * h);
        for s in &seqs {
            for (p, &id) in s.iter().enumerate() {
                let w = &self.word[id as usize * h..(id as usize + 1) * h];
                let ps = &self.pos[p * h..(p + 1) * h];
                x.extend(w.iter().zip(ps).zip(&self.token_type[..h]).map(|((a, b), c)| a + b + c));
            }
        }
        self.emb_norm.apply(&mut x, self.eps);
        let hd = h / self.heads;
        let scale = 1.0 / (hd as f32).sqrt();
        for l in &self.layers {
            let qkv = l.qkv.apply(&x, n);
            let mut ctx = vec![0f32; n * h];
            let mut off = 0;
            let mut scores = Vec::new();
            for s in &seqs {
                let len = s.len();
                for head in 0..self.heads {
                    for i in 0..len {
                        let q = &qkv[(off + i) * 3 * h + head * hd..][..hd];
                        scores.clear();
                        let mut mx = f32::NEG_INFINITY;
                        for j in 0..len {
                            let k = &qkv[(off + j) * 3 * h + h + head * hd..][..hd];
                            let d = q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * scale;
                            mx = mx.max(d);
                            scores.push(d);
                        }
                        let mut sum = 0.0;
                        for v in scores.iter_mut() {
                            *v = (*v - mx).exp();
                            sum += *v;
                        }
                        let out = &mut ctx[(off + i) * h + head * hd..][..hd];
                        for (j, p) in scores.iter().enumerate() {
                            let v = &qkv[(off + j) * 3 * h + 2 * h + head * hd..][..hd];
                            let p = p / sum;
                            for (o, vv) in out.iter_mut().zip(v) {
                                *o += p * vv;
                            }
                        }
                    }
                }
                off += len;
            }
            let mut a = l.attn_out.apply(&ctx, n);
            for (v, r) in a.iter_mut().zip(&x) {
                *v += r;
            }
            l.attn_norm.apply(&mut a, self.eps);
            let mut up = l.up.apply(&a, n);
            for v in up.iter_mut() {
                *v = gelu(*v);
            }
            let mut y = l.down.apply(&up, n);
            for (v, r) in y.iter_mut().zip(&a) {
                *v += r;
            }
            l.out_norm.apply(&mut y, self.eps);
            x = y;
        }
        // Mean pooling over every token (no padding: each text is its own sequence).
        let mut out = Vec::with_capacity(seqs.len());
        let mut off = 0;
        for s in &seqs {
            let mut v = vec![0f32; h];
            for t in 0..s.len() {
                for (a, b) in v.iter_mut().zip(&x[(off + t) * h..(off + t + 1) * h]) {
                    *a += b;
                }
            }
            off += s.len();
            let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt();
            if norm > 0.0 {
                for a in &mut v {
                    *a /= norm;
                }
            }
            out.push(v);
        }
        out
    }
}

impl Embedder for SemanticEmbedder {
    fn id(&self) -> &str {
        &self.id
    }
    fn dim(&self) -> usize {
        self.hidden
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        // Stack at most ~2k tokens per forward pass: large enough for fast products,
        // small enough that the activations stay in a few MB.
        let mut out = Vec::with_capacity(texts.len());
        let mut start = 0;
        while start < texts.len() {
            let mut end = start;
            let mut tokens = 0;
            while end < texts.len() && (end == start || tokens < 2048) {
                tokens += texts[end].len() / 4 + 2;
                end += 1;
            }
            out.extend(self.encode(&texts[start..end]));
            start = end;
        }
        Ok(out)
    }
}

/// GELU (the exact, erf form BERT uses).
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x / std::f32::consts::SQRT_2))
}

/// erf, Abramowitz & Stegun 7.1.26 (absolute error < 1.5e-7).
fn erf(x: f32) -> f32 {
    let s = x.signum();
    let x = x.abs() as f64;
    let t = 1.0 / (1.0 + 0.3275911 * x);
    let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * (-x * x).exp();
    s * y as f32
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F |
        0x2B740..=0x2B81F | 0x2B820..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

fn is_punct(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(c as u32, 0x2010..=0x2027 | 0x2030..=0x205E | 0x3000..=0x303F | 0xFF01..=0xFF0F | 0xFF1A..=0xFF20)
        || matches!(c, '¡' | '§' | '«' | '¶' | '·' | '»' | '¿')
}

/// BERT's basic tokenizer (uncased): control characters dropped, lower case, accents
/// stripped, split on whitespace, punctuation and CJK characters.
fn basic_split(text: &str) -> Vec<String> {
    use unicode_normalization::char::is_combining_mark;
    use unicode_normalization::UnicodeNormalization;
    let mut words = Vec::new();
    let mut cur = String::new();
    let flush = |cur: &mut String, words: &mut Vec<String>| {
        if !cur.is_empty() {
            words.push(std::mem::take(cur));
        }
    };
    for c in text.chars() {
        if c == '\0' || c == '\u{fffd}' || (c.is_control() && !c.is_whitespace()) {
            continue;
        }
        if c.is_whitespace() {
            flush(&mut cur, &mut words);
            continue;
        }
        if is_punct(c) || is_cjk(c) {
            flush(&mut cur, &mut words);
            words.push(c.to_string());
            continue;
        }
        for l in c.to_lowercase() {
            for d in std::iter::once(l).nfd() {
                if !is_combining_mark(d) {
                    cur.push(d);
                }
            }
        }
    }
    flush(&mut cur, &mut words);
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_split_like_bert() {
        assert_eq!(basic_split("Hello, WORLD! Café"), vec!["hello", ",", "world", "!", "cafe"]);
        assert_eq!(basic_split("a\u{0}b  c's"), vec!["ab", "c", "'", "s"]);
        assert_eq!(basic_split("日本x"), vec!["日", "本", "x"]);
    }

    #[test]
    fn erf_and_gelu() {
        assert!((erf(0.5) - 0.520_499_9).abs() < 1e-6);
        assert!((erf(-1.0) + 0.842_700_8).abs() < 1e-6);
        assert!((gelu(1.0) - 0.841_344_7).abs() < 1e-5);
        assert_eq!(gelu(0.0), 0.0);
    }

    #[test]
    fn missing_model_names_the_install_command() {
        let e = SemanticEmbedder::load(Path::new("/nonexistent-edgeswarm-model"), "x").unwrap_err();
        assert!(e.contains("config.json"), "{e}");
    }
}
