//! edgeswarm-search: a real search engine over the home libSQL file.
//!
//! - **Lexical**: FTS5 external-content index over topic, content and tags (kept in step
//!   by triggers in the store schema, so replicated and raw-SQL rows are indexed too),
//!   BM25 with field weights (topic > tags > content), phrase (`"..."`) and prefix
//!   (`word*`) queries, highlighted snippets. Any user text is a valid query.
//! - **Vector**: libSQL's own `F32_BLOB` + `libsql_vector_idx` + `vector_top_k`, one table
//!   per (embedder id, dimension). Hosts plug a model in through [`Embedder`] or choose one
//!   by name ([`EmbedderChoice`]: none, the default; hash; semantic). [`HashEmbedder`] is
//!   *lexical-semantic* (hashed words and trigrams, no download) and measured worse than
//!   lexical on LoCoMo, so it is opt-in.
//! - **Hybrid**: a [`Fusion`] of both rankings (min-max normalised linear blend by
//!   default, chosen on LoCoMo), the default mode when an embedder is set.
//! - **Natural-language queries** (no quotes, `*` or upper-case AND/OR/NOT): stop words
//!   dropped, any word may match, the best 50 re-ranked by how many words they cover.
//! - Filters, stable cursors, a hot-query LRU invalidated by commits, dedup on write.
//!
//! Start it with [`Search::start`]; see the crate README section in docs/DESIGN.md.

pub mod actor;
pub mod embed;
mod engine;
pub mod error;
mod fastlex;
pub mod knowledge;
pub mod query;
pub mod semantic;
mod vectors;

pub use actor::{Search, SearchActor, SearchConfig, SearchMsg, SearchStatus};
pub use embed::{Embedder, EmbedderChoice, HashEmbedder, SharedEmbedder};
pub use engine::{Fusion, ScoreNorm, DEFAULT_FUSION, FUSION_POOL, RRF_K};
pub use error::{Result, SearchError};
pub use knowledge::{add_knowledge, delete_knowledge, get_knowledge, update_knowledge, AddOutcome, KnowledgeEntry, KnowledgeUpdate};
pub use query::{Filters, JsonScalar, Mode, SearchHit, SearchRequest, SearchResponse};
pub use semantic::SemanticEmbedder;
