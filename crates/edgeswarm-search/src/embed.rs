//! Embeddings: the [`Embedder`] trait hosts implement, the embedders chosen by name
//! ([`EmbedderChoice`]), and the [`HashEmbedder`].
//!
//! **The hash embedder is lexical-semantic, not a language model.** It hashes words and
//! character trigrams into a fixed-size vector, so it finds entries sharing words,
//! word stems and spelling variants (`index` ~ `indexes` ~ `indexing`), but it does not
//! know that `car` and `automobile` mean the same thing. It needs no download or network
//! and is fully deterministic. For meaning, choose `semantic` (all-MiniLM-L6-v2, see
//! [`crate::semantic`]) or plug a model in through [`Embedder`].

use std::sync::Arc;

/// A text-embedding model. Implemented by the host (a local model, an API client...).
///
/// `embed` is called on a blocking thread (never on a tokio worker, never on the storage
/// writer), with batches of up to [`EMBED_BATCH`] texts. An async client can run its
/// future with `tokio::runtime::Handle::current().block_on(..)` inside `embed`, since it
/// runs under `spawn_blocking`.
pub trait Embedder: Send + Sync + 'static {
    /// A stable id naming the model *and* its settings (e.g. `"openai/text-3-small"`).
    /// Vectors are stored per (id, dim); a new id triggers a background re-embed.
    fn id(&self) -> &str;
    /// The vector length this embedder returns.
    fn dim(&self) -> usize;
    /// Embeds each text; returns one vector of length `dim()` per text, in order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String>;
}

/// How many texts are embedded (and written) per batch during indexing.
pub const EMBED_BATCH: usize = 128;

/// A shared embedder.
pub type SharedEmbedder = Arc<dyn Embedder>;

/// The embedder a host asks for by name: `embedder = "…"` in edgeswarm.toml's `[search]`,
/// the `EDGESWARM_EMBEDDER` environment variable, `--embedder` on `mcp` and `demo`, or
/// `SwarmBuilder::embedder_choice`.
///
/// The default is [`EmbedderChoice::None`]: measured on the LoCoMo dev split
/// (`edgeswarm bench quality`), the hash embedder makes hybrid *worse* than plain lexical
/// (recall@10 0.45 vs 0.53 on conversation 1) and several times slower, so with no real
/// model the default search is lexical and no vector work runs at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EmbedderChoice {
    /// No embedder: lexical search only, no vectors built (the default).
    #[default]
    None,
    /// The deterministic [`HashEmbedder`] (256 dimensions, no download). Lexical-semantic
    /// only; kept for hosts that want vector plumbing without a model.
    Hash,
    /// The real semantic model `edgeswarm models install` puts in the cache directory
    /// (all-MiniLM-L6-v2, see [`crate::semantic`]).
    Semantic,
}

impl EmbedderChoice {
    /// The environment variable that names the embedder.
    pub const ENV: &'static str = "EDGESWARM_EMBEDDER";
    /// Every accepted value, for error messages.
    pub const VALUES: &'static str = "none, hash, semantic";

    /// The name as written in config, environment and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            EmbedderChoice::None => "none",
            EmbedderChoice::Hash => "hash",
            EmbedderChoice::Semantic => "semantic",
        }
    }

    /// The embedder to start search with (`None`: lexical only). `semantic` loads the
    /// model `edgeswarm models install` put in the cache ([`crate::semantic::models_dir`])
    /// and fails with a message naming that command (and what to choose instead) when it
    /// is not installed.
    pub fn resolve(self) -> Result<Option<SharedEmbedder>, crate::error::SearchError> {
        match self {
            EmbedderChoice::None => Ok(None),
            EmbedderChoice::Hash => Ok(Some(Arc::new(HashEmbedder::default()))),
            EmbedderChoice::Semantic => match crate::semantic::SemanticEmbedder::load_default() {
                Ok(e) => Ok(Some(Arc::new(e))),
                Err(reason) => Err(crate::error::SearchError::Embedder {
                    embedder: "semantic".into(),
                    reason,
                }),
            },
        }
    }
}

impl std::fmt::Display for EmbedderChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EmbedderChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "off" | "" => Ok(EmbedderChoice::None),
            "hash" => Ok(EmbedderChoice::Hash),
            "semantic" => Ok(EmbedderChoice::Semantic),
            other => Err(format!("unknown embedder `{other}`; choose one of: {}", EmbedderChoice::VALUES)),
        }
    }
}

/// Deterministic hashed word + character-trigram embedder (lexical-semantic; see the
/// module docs for what it can and cannot find).
#[derive(Debug, Clone)]
pub struct HashEmbedder {
    dim: usize,
    id: String,
}

impl HashEmbedder {
    /// A hash embedder with `dim` dimensions (clamped to 16..=4096). 256 is a good default.
    pub fn new(dim: usize) -> Self {
        let dim = dim.clamp(16, 4096);
        HashEmbedder {
            dim,
            id: format!("edgeswarm-hash-ngram-v1-{dim}"),
        }
    }

    /// Embeds one text (what `embed` does per item).
    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.dim];
        let lower = text.to_lowercase();
        for word in lower.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
            self.add(&mut v, word.as_bytes(), 1.0);
            let padded: Vec<char> = std::iter::once('<').chain(word.chars()).chain(std::iter::once('>')).collect();
            if padded.len() >= 3 {
                for w in padded.windows(3) {
                    let s: String = w.iter().collect();
                    self.add(&mut v, s.as_bytes(), 0.4);
                }
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            for x in &mut v {
                *x /= norm;
            }
        }
        v
    }

    fn add(&self, v: &mut [f32], bytes: &[u8], w: f32) {
        let h = fnv(bytes);
        let i = (h % self.dim as u64) as usize;
        let sign = if (h >> 63) & 1 == 1 { -1.0 } else { 1.0 };
        v[i] += sign * w;
    }
}

impl Default for HashEmbedder {
    fn default() -> Self {
        HashEmbedder::new(256)
    }
}

impl Embedder for HashEmbedder {
    fn id(&self) -> &str {
        &self.id
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        Ok(texts.iter().map(|t| self.embed_one(t)).collect())
    }
}

fn fnv(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for x in b {
        h ^= *x as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    // Final avalanche so the low bits (used for the bucket) depend on every byte.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h
}

/// An f32 vector as the little-endian blob libSQL's `F32_BLOB` stores.
pub fn to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The text embedded for an entry: topic, tags and content.
pub fn entry_text(topic: &str, tags: &str, content: &str) -> String {
    let mut s = String::with_capacity(topic.len() + tags.len() + content.len() + 2);
    s.push_str(topic);
    s.push('\n');
    s.push_str(tags);
    s.push('\n');
    // Long contents are cut: the start carries most of the signal, and embedding cost
    // stays bounded.
    let cut = content.char_indices().nth(8192).map(|(i, _)| i).unwrap_or(content.len());
    s.push_str(&content[..cut]);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn deterministic_normalised_and_lexically_close() {
        let e = HashEmbedder::new(128);
        let a = e.embed_one("vector indexing in libsql");
        assert_eq!(a, e.embed_one("vector indexing in libsql"));
        assert_eq!(a.len(), 128);
        assert!((cos(&a, &a) - 1.0).abs() < 1e-4);
        let near = e.embed_one("indexes for vectors");
        let far = e.embed_one("chocolate cake recipe");
        assert!(cos(&a, &near) > cos(&a, &far));
        assert!(e.embed_one("!!!").iter().all(|x| *x == 0.0));
        assert_eq!(to_blob(&[1.0]).len(), 4);
    }

    #[test]
    fn embedder_choice_parses_and_resolves() {
        assert_eq!("HASH".parse::<EmbedderChoice>().unwrap(), EmbedderChoice::Hash);
        assert_eq!("none".parse::<EmbedderChoice>().unwrap(), EmbedderChoice::None);
        assert_eq!(EmbedderChoice::default(), EmbedderChoice::None);
        assert!("bert".parse::<EmbedderChoice>().unwrap_err().contains("none, hash, semantic"));
        assert!(EmbedderChoice::None.resolve().unwrap().is_none());
        assert!(EmbedderChoice::Hash.resolve().unwrap().is_some());
        // Installed (CI installs it) or not, `semantic` loads the model or says how to get it.
        match EmbedderChoice::Semantic.resolve() {
            Ok(e) => assert!(e.unwrap().id().starts_with(crate::semantic::DEFAULT_MODEL)),
            Err(e) => assert!(e.to_string().contains("edgeswarm models install"), "{e}"),
        }
        let empty = std::env::temp_dir().join(format!("edgeswarm-no-models-{}", std::process::id()));
        let e = crate::semantic::SemanticEmbedder::load_from_cache(&empty).unwrap_err();
        assert!(e.contains("edgeswarm models install") && e.contains("\"none\""), "{e}");
    }
}
