// model.cpp — forward, backward, KV-cache sampling and parameter layout of the bundled model (see model.hpp).
//
// Design: all sequences of a batch are concatenated into one (d x N) activation matrix, so every projection is one
// GEMM over all tokens of all rows; only attention runs per (sequence, head). The training forward and the KV-cache
// forward are the same function (trunk_forward): with a cache, new tokens attend to the cached keys as well, which is
// how prefill (all prompt tokens) and decoding (one token per row) share the code with teacher forcing.
#include "model.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <numeric>
#include <sstream>

#include "corl/core/rng.hpp"
#include "corl/sampling/sampler.hpp"

namespace ulm {

using corl::index_t;
using layers::ConstVecMap;
using layers::ConstWeightMap;
using layers::Mat;
using layers::Vec;
using layers::VecMap;
using layers::WeightMap;

// ---- configuration -------------------------------------------------------------------------------------------------

void ModelConfig::validate() const {
  auto positive = [](int v, const char* name) {
    corl::require(v > 0, "ulm::ModelConfig::validate: ", name, " = ", v, ", expected > 0");
  };
  positive(text_vocab, "text_vocab");
  positive(image_vocab, "image_vocab");
  positive(image_tokens, "image_tokens");
  positive(d_model, "d_model");
  positive(n_layers, "n_layers");
  positive(n_heads, "n_heads");
  positive(d_ff, "d_ff");
  positive(d_code, "d_code");
  positive(max_seq, "max_seq");
  corl::require(d_model % n_heads == 0, "ulm::ModelConfig::validate: d_model = ", d_model,
                " is not divisible by n_heads = ", n_heads);
  corl::require(head_dim() % 2 == 0, "ulm::ModelConfig::validate: head size d_model / n_heads = ", head_dim(),
                ", expected even (rotary pairs)");
  corl::require(rope_theta > 1.0, "ulm::ModelConfig::validate: rope_theta = ", rope_theta, ", expected > 1");
  corl::require(norm_eps > 0.0, "ulm::ModelConfig::validate: norm_eps = ", norm_eps, ", expected > 0");
  corl::require(code_colours >= 0 && code_shapes >= 0 && (code_colours > 0) == (code_shapes > 0),
                "ulm::ModelConfig::validate: code_colours = ", code_colours, ", code_shapes = ", code_shapes,
                ", expected both 0 (plain image-code tables) or both > 0 (factored codes)");
  const long long factored_vocab = 1 + static_cast<long long>(code_colours) * code_shapes;  // no int overflow
  corl::require(!factored_codes() || image_vocab == factored_vocab,
                "ulm::ModelConfig::validate: factored codes need image_vocab = 1 + code_colours * code_shapes = ",
                factored_vocab, ", got ", image_vocab);
  for (auto [id, name] : {std::pair{pad_id, "pad_id"}, std::pair{bos_id, "bos_id"}, std::pair{eos_id, "eos_id"},
                          std::pair{image_begin_id, "image_begin_id"}}) {
    corl::require(id >= 0 && id < text_vocab, "ulm::ModelConfig::validate: ", name, " = ", id,
                  ", expected in [0, text_vocab = ", text_vocab, ")");
  }
}

std::map<std::string, std::string> ModelConfig::to_metadata() const {
  std::map<std::string, std::string> m;
  auto put = [&m](const char* k, auto v) {
    std::ostringstream os;
    os.precision(17);
    os << v;
    m[k] = os.str();
  };
  put("format", "ulm_r1");
  put("text_vocab", text_vocab);
  put("image_vocab", image_vocab);
  put("image_tokens", image_tokens);
  put("d_model", d_model);
  put("n_layers", n_layers);
  put("n_heads", n_heads);
  put("d_ff", d_ff);
  put("d_code", d_code);
  put("max_seq", max_seq);
  put("rope_theta", rope_theta);
  put("norm_eps", norm_eps);
  put("pad_id", pad_id);
  put("bos_id", bos_id);
  put("eos_id", eos_id);
  put("image_begin_id", image_begin_id);
  if (factored_codes()) {
    put("code_colours", code_colours);
    put("code_shapes", code_shapes);
  }
  return m;
}

ModelConfig ModelConfig::from_metadata(const std::map<std::string, std::string>& meta, const std::string& where) {
  ModelConfig c;
  auto get = [&](const char* key) -> const std::string& {
    const auto it = meta.find(key);
    corl::require(it != meta.end(), "ulm::ModelConfig::from_metadata: '", where, "': __metadata__ lacks \"", key,
                  "\"");
    return it->second;
  };
  auto get_int = [&](const char* key, int* out) {
    const std::string& s = get(key);
    std::size_t used = 0;
    long v = 0;
    try {
      v = std::stol(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    corl::require(used == s.size() && !s.empty() && v >= std::numeric_limits<int>::min() &&
                      v <= std::numeric_limits<int>::max(),
                  "ulm::ModelConfig::from_metadata: '", where, "': __metadata__[\"", key, "\"] = \"", s,
                  "\", expected an integer");
    *out = static_cast<int>(v);
  };
  auto get_double = [&](const char* key, double* out) {
    const std::string& s = get(key);
    std::size_t used = 0;
    try {
      *out = std::stod(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    corl::require(used == s.size() && !s.empty(), "ulm::ModelConfig::from_metadata: '", where, "': __metadata__[\"",
                  key, "\"] = \"", s, "\", expected a number");
  };
  corl::require(get("format") == "ulm_r1", "ulm::ModelConfig::from_metadata: '", where,
                "': __metadata__[\"format\"] = \"", get("format"), "\", expected \"ulm_r1\"");
  get_int("text_vocab", &c.text_vocab);
  get_int("image_vocab", &c.image_vocab);
  get_int("image_tokens", &c.image_tokens);
  get_int("d_model", &c.d_model);
  get_int("n_layers", &c.n_layers);
  get_int("n_heads", &c.n_heads);
  get_int("d_ff", &c.d_ff);
  get_int("d_code", &c.d_code);
  get_int("max_seq", &c.max_seq);
  get_double("rope_theta", &c.rope_theta);
  get_double("norm_eps", &c.norm_eps);
  get_int("pad_id", &c.pad_id);
  get_int("bos_id", &c.bos_id);
  get_int("eos_id", &c.eos_id);
  get_int("image_begin_id", &c.image_begin_id);
  if (meta.count("code_colours") || meta.count("code_shapes")) {  // absent: plain tables (checkpoints before them)
    get_int("code_colours", &c.code_colours);
    get_int("code_shapes", &c.code_shapes);
  }
  c.validate();
  return c;
}

// ---- tokens --------------------------------------------------------------------------------------------------------

Sequence text_sequence(std::span<const int> ids) {
  Sequence s;
  s.reserve(ids.size());
  for (int id : ids) s.push_back(Token{id, Modality::text});
  return s;
}

Sequence image_sequence(std::span<const int> codes, Modality modality) {
  corl::require(modality != Modality::text, "ulm::image_sequence: modality must be image_in or image_out");
  Sequence s;
  s.reserve(codes.size());
  for (int c : codes) s.push_back(Token{c, modality});
  return s;
}

Sequence unconditional_prompt(const Sequence& prompt, const ModelConfig& config) {
  Sequence u = prompt;
  for (Token& t : u) {
    if (t.modality == Modality::text && t.id != config.bos_id && t.id != config.image_begin_id) t.id = config.pad_id;
  }
  return u;
}

// ---- parameter layout ----------------------------------------------------------------------------------------------

std::vector<ParamInfo> param_layout(const ModelConfig& c) {
  c.validate();
  std::vector<ParamInfo> out;
  index_t offset = 0;
  auto add = [&](std::string name, std::vector<index_t> shape) {
    index_t n = 1;
    for (index_t s : shape) n *= s;
    out.push_back(ParamInfo{std::move(name), std::move(shape), offset, n});
    offset += n;
  };
  const index_t d = c.d_model, f = c.d_ff, vt = c.text_vocab, vi = c.image_vocab, dc = c.d_code;
  add("model.embed_tokens.weight", {vt, d});
  add("und_embed.weight", {vi, dc});
  add("und_aligner.weight", {d, dc});
  add("und_aligner.bias", {d});
  add("gen_embed.weight", {vi, d});
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {d});
    add(p + "self_attn.q_proj.weight", {d, d});
    add(p + "self_attn.k_proj.weight", {d, d});
    add(p + "self_attn.v_proj.weight", {d, d});
    add(p + "self_attn.o_proj.weight", {d, d});
    add(p + "post_attention_layernorm.weight", {d});
    add(p + "mlp.gate_proj.weight", {f, d});
    add(p + "mlp.up_proj.weight", {f, d});
    add(p + "mlp.down_proj.weight", {d, f});
  }
  add("model.norm.weight", {d});
  add("lm_head.weight", {vt, d});
  add("gen_head.0.weight", {d, d});
  add("gen_head.0.bias", {d});
  add("gen_head.2.weight", {vi, d});
  add("gen_head.2.bias", {vi});
  if (c.factored_codes()) {  // after every plain parameter: the plain layout is a prefix of this one
    const index_t nf = c.code_colours + c.code_shapes;
    add("image_factors.und_embed.weight", {nf, dc});
    add("image_factors.gen_embed.weight", {nf, d});
    add("image_factors.gen_head.weight", {nf, d});
  }
  return out;
}

namespace {

/// Offsets of every parameter, in layout order (param_layout above).
struct Index {
  index_t embed, und_embed, und_w, und_b, gen_embed;
  struct Layer {
    index_t ln1, q, k, v, o, ln2, gate, up, down;
  };
  std::vector<Layer> layers;
  index_t norm, lm_head, g0w, g0b, g2w, g2b;
  index_t f_und = -1, f_gen = -1, f_head = -1;  ///< factor tables (factored codes only)
};

Index make_index(const std::vector<ParamInfo>& lay, int n_layers) {
  Index ix{};
  std::size_t i = 0;
  auto next = [&]() { return lay.at(i++).offset; };
  ix.embed = next();
  ix.und_embed = next();
  ix.und_w = next();
  ix.und_b = next();
  ix.gen_embed = next();
  for (int l = 0; l < n_layers; ++l) {
    Index::Layer L{};
    L.ln1 = next();
    L.q = next();
    L.k = next();
    L.v = next();
    L.o = next();
    L.ln2 = next();
    L.gate = next();
    L.up = next();
    L.down = next();
    ix.layers.push_back(L);
  }
  ix.norm = next();
  ix.lm_head = next();
  ix.g0w = next();
  ix.g0b = next();
  ix.g2w = next();
  ix.g2b = next();
  if (i < lay.size()) {
    ix.f_und = next();
    ix.f_gen = next();
    ix.f_head = next();
  }
  return ix;
}

/// One image-code table the forward reads and its factor table (code_colours colour rows, then code_shapes shape
/// rows), both `width` wide (factored codes only).
struct CodeTable {
  index_t table, factors, width;
};
std::array<CodeTable, 3> code_tables(const ModelConfig& c, const Index& ix) {
  return {CodeTable{ix.und_embed, ix.f_und, c.d_code}, CodeTable{ix.gen_embed, ix.f_gen, c.d_model},
          CodeTable{ix.g2w, ix.f_head, c.d_model}};
}
index_t colour_row(const ModelConfig& c, index_t code) { return (code - 1) / c.code_shapes; }
index_t shape_row(const ModelConfig& c, index_t code) { return c.code_colours + (code - 1) % c.code_shapes; }

/// The parameters the forward reads, for factored codes: a copy of the parameters whose code tables hold
/// table[k] + colours[colour(k)] + shapes[shape(k)] for k >= 1 (code 0, the empty cell, has no factors); everything
/// else reads the same offsets. Empty for plain codes, whose forward reads the parameters themselves (forward_data).
template <class Real>
std::vector<Real> factored_view(const ModelConfig& c, const Index& ix, const std::vector<Real>& params) {
  if (!c.factored_codes()) return {};
  std::vector<Real> view = params;
  for (const CodeTable& t : code_tables(c, ix)) {
    for (index_t k = 1; k < c.image_vocab; ++k) {
      Real* row = view.data() + t.table + k * t.width;
      const Real* colour = params.data() + t.factors + colour_row(c, k) * t.width;
      const Real* shape = params.data() + t.factors + shape_row(c, k) * t.width;
      for (index_t j = 0; j < t.width; ++j) row[j] += colour[j] + shape[j];
    }
  }
  return view;
}
template <class Real>
const Real* forward_data(const std::vector<Real>& view, const std::vector<Real>& params) {
  return view.empty() ? params.data() : view.data();
}

/// Factored codes: the backward adds each code table's gradient into G's table slice; that gradient also belongs to
/// the code's colour and shape rows. The constructor clears the slices (keeping what the caller had accumulated) so
/// that, after the backward, give_back() can read this call's contribution exactly, add it to the factor rows and
/// restore the caller's values. Constructed after every input check, so an error leaves the caller's buffer intact.
template <class Real>
class CodeGradientFold {
 public:
  CodeGradientFold(const ModelConfig& c, const Index& ix, Real* G) : c_(c), ix_(ix), G_(G) {
    if (!c.factored_codes()) return;
    for (const CodeTable& t : code_tables(c, ix)) {
      Real* slice = G + t.table;
      const index_t n = c.image_vocab * t.width;
      saved_.emplace_back(slice, slice + n);
      std::fill(slice, slice + n, Real(0));
    }
  }
  void give_back() {
    if (!c_.factored_codes()) return;
    std::size_t s = 0;
    for (const CodeTable& t : code_tables(c_, ix_)) {
      Real* table = G_ + t.table;
      for (index_t k = 1; k < c_.image_vocab; ++k) {
        Real* colour = G_ + t.factors + colour_row(c_, k) * t.width;
        Real* shape = G_ + t.factors + shape_row(c_, k) * t.width;
        for (index_t j = 0; j < t.width; ++j) {
          colour[j] += table[k * t.width + j];
          shape[j] += table[k * t.width + j];
        }
      }
      const std::vector<Real>& keep = saved_[s++];
      for (std::size_t j = 0; j < keep.size(); ++j) table[j] += keep[j];
    }
  }

 private:
  const ModelConfig& c_;
  const Index& ix_;
  Real* G_;
  std::vector<std::vector<Real>> saved_;
};

template <class Real>
ConstWeightMap<Real> cw(const Real* base, index_t off, index_t rows, index_t cols) {
  return ConstWeightMap<Real>(base + off, rows, cols);
}
template <class Real>
WeightMap<Real> mw(Real* base, index_t off, index_t rows, index_t cols) {
  return WeightMap<Real>(base + off, rows, cols);
}
template <class Real>
ConstVecMap<Real> cv(const Real* base, index_t off, index_t n) {
  return ConstVecMap<Real>(base + off, n);
}
template <class Real>
VecMap<Real> mv(Real* base, index_t off, index_t n) {
  return VecMap<Real>(base + off, n);
}

/// A run of consecutive columns of the concatenated batch that belong to one sequence; `offset` tokens of that
/// sequence are already in its KV cache (0 for teacher forcing).
struct Segment {
  index_t start = 0, len = 0, offset = 0;
  index_t cache = -1;  ///< index into the caches array, -1 when none
};

template <class Real>
struct RowCache {
  std::vector<Mat<Real>> k, v;  ///< per layer, d x max_seq (post-rotary keys)
  index_t length = 0;
};

template <class Real>
struct TrunkTape {
  struct Layer {
    Mat<Real> x_in, h1, q, k, v, attn, x_mid, h2, g, u, act;
    Vec<Real> inv1, inv2;
    std::vector<Mat<Real>> p;  ///< per (segment, head)
  };
  std::vector<Token> tokens;
  std::vector<Segment> segments;
  std::vector<index_t> pos;
  std::vector<Layer> layers;
  Mat<Real> x_out, hf;
  Vec<Real> invf;
};

template <class Real>
void check_tokens(const ModelConfig& c, const std::vector<Token>& tokens, const char* where) {
  for (std::size_t j = 0; j < tokens.size(); ++j) {
    const Token& t = tokens[j];
    const int limit = t.modality == Modality::text ? c.text_vocab : c.image_vocab;
    corl::require(t.id >= 0 && t.id < limit, where, ": token[", j, "].id = ", t.id, " (",
                  t.modality == Modality::text ? "text" : "image", "), expected in [0, ", limit, ")");
  }
}

/// Embeds tokens into columns of a d x N matrix.
template <class Real>
Mat<Real> embed(const ModelConfig& c, const Index& ix, const Real* P, const std::vector<Token>& tokens) {
  const index_t d = c.d_model, n = static_cast<index_t>(tokens.size());
  Mat<Real> x(d, n);
  const auto emb = cw(P, ix.embed, c.text_vocab, d);
  const auto und = cw(P, ix.und_embed, c.image_vocab, c.d_code);
  const auto und_w = cw(P, ix.und_w, d, c.d_code);
  const auto und_b = cv(P, ix.und_b, d);
  const auto gen = cw(P, ix.gen_embed, c.image_vocab, d);
  for (index_t j = 0; j < n; ++j) {
    const Token& t = tokens[static_cast<std::size_t>(j)];
    switch (t.modality) {
      case Modality::text: x.col(j) = emb.row(t.id).transpose(); break;
      case Modality::image_out: x.col(j) = gen.row(t.id).transpose(); break;
      case Modality::image_in: x.col(j) = und_w * und.row(t.id).transpose() + und_b; break;
    }
  }
  return x;
}

/// The trunk over all segments; returns the final normed hidden states (d x N). With caches, each segment's new keys
/// and values are appended to its cache and attention also covers the cached positions. With a tape (teacher
/// forcing, all offsets 0) every activation the backward needs is kept.
template <class Real>
Mat<Real> trunk_forward(const ModelConfig& c, const Index& ix, const Real* P, const layers::RopeTable<Real>& rope,
                        const std::vector<Token>& tokens,
                        const std::vector<Segment>& segs, std::vector<RowCache<Real>>* caches,
                        TrunkTape<Real>* tape) {
  const index_t d = c.d_model, hd = c.head_dim(), n = static_cast<index_t>(tokens.size());
  const Real eps = static_cast<Real>(c.norm_eps);
  std::vector<index_t> pos(static_cast<std::size_t>(n));
  for (const Segment& s : segs) {
    corl::require(s.offset + s.len <= c.max_seq, "ulm::Model: sequence of length ", s.offset + s.len,
                  " exceeds max_seq = ", c.max_seq);
    for (index_t i = 0; i < s.len; ++i) pos[static_cast<std::size_t>(s.start + i)] = s.offset + i;
  }
  Mat<Real> x = embed(c, ix, P, tokens);
  if (tape) {
    tape->tokens = tokens;
    tape->segments = segs;
    tape->pos = pos;
    tape->layers.assign(static_cast<std::size_t>(c.n_layers), {});
  }
  Mat<Real> h1, h2, q, k, v, attn(d, n), out, p;
  Vec<Real> inv1, inv2;
  for (int l = 0; l < c.n_layers; ++l) {
    const auto& L = ix.layers[static_cast<std::size_t>(l)];
    layers::rmsnorm_forward<Real>(x, cv(P, L.ln1, d), eps, h1, inv1);
    q.noalias() = cw(P, L.q, d, d) * h1;
    k.noalias() = cw(P, L.k, d, d) * h1;
    v.noalias() = cw(P, L.v, d, d) * h1;
    layers::rope_apply<Real>(q, hd, pos, rope, false);
    layers::rope_apply<Real>(k, hd, pos, rope, false);
    if (tape) tape->layers[static_cast<std::size_t>(l)].p.clear();
    for (const Segment& s : segs) {
      RowCache<Real>* rc = (caches && s.cache >= 0) ? &(*caches)[static_cast<std::size_t>(s.cache)] : nullptr;
      if (rc) {
        corl::require(rc->length == s.offset, "ulm::Model: cache length ", rc->length, " != segment offset ",
                      s.offset);
        rc->k[static_cast<std::size_t>(l)].middleCols(s.offset, s.len) = k.middleCols(s.start, s.len);
        rc->v[static_cast<std::size_t>(l)].middleCols(s.offset, s.len) = v.middleCols(s.start, s.len);
      } else {
        corl::require(s.offset == 0, "ulm::Model: a segment with offset ", s.offset, " needs a KV cache");
      }
      // keys and values: the cache's filled columns, or the segment's own columns (views, no copies)
      const Mat<Real>& k_src = rc ? rc->k[static_cast<std::size_t>(l)] : k;
      const Mat<Real>& v_src = rc ? rc->v[static_cast<std::size_t>(l)] : v;
      const index_t k_first = rc ? 0 : s.start, k_count = rc ? s.offset + s.len : s.len;
      for (int h = 0; h < c.n_heads; ++h) {
        layers::attention_head_forward<Real>(q.block(h * hd, s.start, hd, s.len),
                                             k_src.block(h * hd, k_first, hd, k_count),
                                             v_src.block(h * hd, k_first, hd, k_count), s.offset, out, p);
        attn.block(h * hd, s.start, hd, s.len) = out;
        if (tape) tape->layers[static_cast<std::size_t>(l)].p.push_back(p);
      }
    }
    Mat<Real> x_mid = x;
    x_mid.noalias() += cw(P, L.o, d, d) * attn;
    layers::rmsnorm_forward<Real>(x_mid, cv(P, L.ln2, d), eps, h2, inv2);
    Mat<Real> g = cw(P, L.gate, c.d_ff, d) * h2;
    Mat<Real> u = cw(P, L.up, c.d_ff, d) * h2;
    Mat<Real> act = layers::swiglu_forward<Real>(g, u);
    Mat<Real> x_next = x_mid;
    x_next.noalias() += cw(P, L.down, d, c.d_ff) * act;
    if (tape) {
      auto& T = tape->layers[static_cast<std::size_t>(l)];
      T.x_in = std::move(x);
      T.h1 = h1;
      T.inv1 = inv1;
      T.q = q;
      T.k = k;
      T.v = v;
      T.attn = attn;
      T.x_mid = std::move(x_mid);
      T.h2 = h2;
      T.inv2 = inv2;
      T.g = std::move(g);
      T.u = std::move(u);
      T.act = std::move(act);
    }
    x = std::move(x_next);
  }
  if (caches) {
    for (const Segment& s : segs)
      if (s.cache >= 0) (*caches)[static_cast<std::size_t>(s.cache)].length = s.offset + s.len;
  }
  Mat<Real> hf;
  Vec<Real> invf;
  layers::rmsnorm_forward<Real>(x, cv(P, ix.norm, d), eps, hf, invf);
  if (tape) {
    tape->x_out = std::move(x);
    tape->invf = invf;
    tape->hf = hf;
  }
  return hf;
}

/// Backward of trunk_forward (teacher forcing): dhf (d x N) -> parameter gradients.
template <class Real>
void trunk_backward(const ModelConfig& c, const Index& ix, const Real* P, const layers::RopeTable<Real>& rope,
                    const TrunkTape<Real>& T,
                    const Mat<Real>& dhf, Real* G) {
  const index_t d = c.d_model, hd = c.head_dim(), f = c.d_ff;
  Mat<Real> dx;
  auto dnorm = mv(G, ix.norm, d);
  layers::rmsnorm_backward<Real>(T.x_out, cv(P, ix.norm, d), T.invf, dhf, dx, dnorm);
  Mat<Real> tmp, dg, du, dh, dq, dk, dv, dqh, dkh, dvh;
  for (int l = c.n_layers - 1; l >= 0; --l) {
    const auto& L = ix.layers[static_cast<std::size_t>(l)];
    const auto& A = T.layers[static_cast<std::size_t>(l)];
    // MLP branch: x_next = x_mid + W_down act
    const Mat<Real> dact = cw(P, L.down, d, f).transpose() * dx;
    mw(G, L.down, d, f).noalias() += dx * A.act.transpose();
    layers::swiglu_backward<Real>(A.g, A.u, dact, dg, du);
    mw(G, L.gate, f, d).noalias() += dg * A.h2.transpose();
    mw(G, L.up, f, d).noalias() += du * A.h2.transpose();
    dh.noalias() = cw(P, L.gate, f, d).transpose() * dg;
    dh.noalias() += cw(P, L.up, f, d).transpose() * du;
    auto dln2 = mv(G, L.ln2, d);
    layers::rmsnorm_backward<Real>(A.x_mid, cv(P, L.ln2, d), A.inv2, dh, tmp, dln2);
    dx += tmp;  // dx is now d x_mid
    // attention branch: x_mid = x_in + W_o attn
    const Mat<Real> dattn = cw(P, L.o, d, d).transpose() * dx;
    mw(G, L.o, d, d).noalias() += dx * A.attn.transpose();
    dq.setZero(d, dattn.cols());
    dk.setZero(d, dattn.cols());
    dv.setZero(d, dattn.cols());
    std::size_t pi = 0;
    for (const Segment& s : T.segments) {
      for (int h = 0; h < c.n_heads; ++h, ++pi) {
        layers::attention_head_backward<Real>(A.q.block(h * hd, s.start, hd, s.len),
                                              A.k.block(h * hd, s.start, hd, s.len),
                                              A.v.block(h * hd, s.start, hd, s.len), A.p[pi],
                                              dattn.block(h * hd, s.start, hd, s.len), dqh, dkh, dvh);
        dq.block(h * hd, s.start, hd, s.len) = dqh;
        dk.block(h * hd, s.start, hd, s.len) = dkh;
        dv.block(h * hd, s.start, hd, s.len) = dvh;
      }
    }
    layers::rope_apply<Real>(dq, hd, T.pos, rope, true);
    layers::rope_apply<Real>(dk, hd, T.pos, rope, true);
    mw(G, L.q, d, d).noalias() += dq * A.h1.transpose();
    mw(G, L.k, d, d).noalias() += dk * A.h1.transpose();
    mw(G, L.v, d, d).noalias() += dv * A.h1.transpose();
    dh.noalias() = cw(P, L.q, d, d).transpose() * dq;
    dh.noalias() += cw(P, L.k, d, d).transpose() * dk;
    dh.noalias() += cw(P, L.v, d, d).transpose() * dv;
    auto dln1 = mv(G, L.ln1, d);
    layers::rmsnorm_backward<Real>(A.x_in, cv(P, L.ln1, d), A.inv1, dh, tmp, dln1);
    dx += tmp;  // dx is now d x_in
  }
  // embeddings
  auto demb = mw(G, ix.embed, c.text_vocab, d);
  auto dund = mw(G, ix.und_embed, c.image_vocab, c.d_code);
  auto dund_w = mw(G, ix.und_w, d, c.d_code);
  auto dund_b = mv(G, ix.und_b, d);
  auto dgen = mw(G, ix.gen_embed, c.image_vocab, d);
  const auto und = cw(P, ix.und_embed, c.image_vocab, c.d_code);
  const auto und_w = cw(P, ix.und_w, d, c.d_code);
  for (std::size_t j = 0; j < T.tokens.size(); ++j) {
    const Token& t = T.tokens[j];
    const auto col = dx.col(static_cast<index_t>(j));
    switch (t.modality) {
      case Modality::text: demb.row(t.id) += col.transpose(); break;
      case Modality::image_out: dgen.row(t.id) += col.transpose(); break;
      case Modality::image_in:
        dund_w.noalias() += col * und.row(t.id);
        dund_b += col;
        dund.row(t.id).noalias() += (und_w.transpose() * col).transpose();
        break;
    }
  }
}

/// Head outputs for a set of hidden columns: text logits (Vt x n) or image logits (Vi x n) (+ the gen head's
/// pre-activation for the backward).
template <class Real>
Mat<Real> text_head(const ModelConfig& c, const Index& ix, const Real* P, const Mat<Real>& h) {
  return cw(P, ix.lm_head, c.text_vocab, c.d_model) * h;
}
template <class Real>
Mat<Real> image_head(const ModelConfig& c, const Index& ix, const Real* P, const Mat<Real>& h, Mat<Real>* z1_out) {
  const index_t d = c.d_model;
  Mat<Real> z1 = cw(P, ix.g0w, d, d) * h;
  z1.colwise() += cv(P, ix.g0b, d);
  Mat<Real> a = z1.unaryExpr([](Real x) { return layers::gelu(x); });
  Mat<Real> z = cw(P, ix.g2w, c.image_vocab, d) * a;
  z.colwise() += cv(P, ix.g2b, c.image_vocab);
  if (z1_out) *z1_out = std::move(z1);
  return z;
}

template <class Real>
Mat<Real> gather_cols(const Mat<Real>& m, const std::vector<index_t>& cols) {
  Mat<Real> out(m.rows(), static_cast<index_t>(cols.size()));
  for (std::size_t i = 0; i < cols.size(); ++i) out.col(static_cast<index_t>(i)) = m.col(cols[i]);
  return out;
}

/// H = -sum_v p_v log p_v from a log-softmax column and its exp (p = exp(ls), which the backward also needs, so it
/// is computed once); terms with p = 0 (log p = -inf) contribute 0, not 0 * -inf.
template <class Real>
Real entropy_of_log_softmax(const Vec<Real>& ls, const Vec<Real>& p) {
  Real h = 0;
  for (index_t v = 0; v < ls.size(); ++v)
    if (std::isfinite(static_cast<double>(ls(v)))) h -= p(v) * ls(v);
  return h;
}

}  // namespace

// ---- tape ----------------------------------------------------------------------------------------------------------

template <class Real>
struct Tape {
  TrunkTape<Real> trunk;
  std::vector<index_t> text_cols, image_cols;  ///< hidden columns fed to each head
  Mat<Real> image_z1;                          ///< gen head pre-GELU (d x n_image)
  struct Row {
    Modality modality = Modality::text;
    bool cfg = false;
    index_t cond_first = 0, uncond_first = 0;  ///< first target column in the head's column list
    index_t n = 0;
  };
  std::vector<Row> rows;
  Real temperature = 1, cfg_weight = 1;
  /// factored_view of the parameters the forward read (empty for plain codes), reused by the backward
  std::vector<Real> factored_params;
};

template <class Real>
void TapeDeleter<Real>::operator()(Tape<Real>* t) const {
  delete t;
}

// ---- Model ---------------------------------------------------------------------------------------------------------

template <class Real>
Model<Real>::Model(const ModelConfig& config, std::uint64_t seed)
    : config_(config),
      layout_(param_layout(config)),
      rope_(config.rope_theta, config.head_dim(), config.max_seq) {
  params_.assign(static_cast<std::size_t>(layout_.back().offset + layout_.back().size), Real(0));
  corl::CounterRng rng(seed, 0x6d6f64u);
  for (const ParamInfo& p : layout_) {
    Real* w = params_.data() + p.offset;
    const bool is_norm = p.name.find("norm") != std::string::npos;
    const bool is_bias = p.name.size() >= 5 && p.name.compare(p.name.size() - 5, 5, ".bias") == 0;
    const bool is_embedding = p.name.find("embed") != std::string::npos;
    double std_dev = 0;
    if (is_norm) {
      std::fill(w, w + p.size, Real(1));
      continue;
    }
    if (is_bias) continue;
    if (is_embedding) std_dev = 1.0;
    else std_dev = 1.0 / std::sqrt(static_cast<double>(p.shape[1]));
    if (p.name.find("o_proj") != std::string::npos || p.name.find("down_proj") != std::string::npos)
      std_dev /= std::sqrt(2.0 * config_.n_layers);
    for (index_t i = 0; i < p.size; ++i) w[i] = static_cast<Real>(std_dev * rng.normal());
  }
}

template <class Real>
std::span<Real> Model<Real>::parameter(const std::string& name) {
  for (const ParamInfo& p : layout_)
    if (p.name == name) return std::span<Real>(params_.data() + p.offset, static_cast<std::size_t>(p.size));
  corl::fail("ulm::Model::parameter: no parameter named '", name, "'");
}

template <class Real>
Scored<Real> Model<Real>::score(const std::vector<ScoreRow>& rows, const ScoreOptions& options) const {
  const ModelConfig& c = config_;
  corl::require(options.temperature > 0 && std::isfinite(options.temperature),
                "ulm::Model::score: options.temperature = ", options.temperature, ", expected finite > 0");
  corl::require(std::isfinite(options.cfg_weight), "ulm::Model::score: options.cfg_weight = ", options.cfg_weight,
                ", expected finite");
  const Index ix = make_index(layout_, c.n_layers);
  Scored<Real> result;
  result.tape.reset(new Tape<Real>());
  Tape<Real>& T = *result.tape;
  T.factored_params = factored_view(c, ix, params_);
  const Real* P = forward_data(T.factored_params, params_);
  T.temperature = static_cast<Real>(options.temperature);
  T.cfg_weight = static_cast<Real>(options.cfg_weight);

  std::vector<Token> tokens;
  std::vector<Segment> segs;
  struct Pending {
    index_t cond_seg, uncond_seg;
  };
  std::vector<Pending> pend;
  auto add_seq = [&](const Sequence& a, const Sequence& b) {
    Segment s;
    s.start = static_cast<index_t>(tokens.size());
    s.len = static_cast<index_t>(a.size() + b.size());
    tokens.insert(tokens.end(), a.begin(), a.end());
    tokens.insert(tokens.end(), b.begin(), b.end());
    segs.push_back(s);
    return static_cast<index_t>(segs.size() - 1);
  };
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const ScoreRow& row = rows[r];
    corl::require(!row.prompt.empty(), "ulm::Model::score: rows[", r, "].prompt is empty (needs at least <bos>)");
    typename Tape<Real>::Row tr;
    tr.n = static_cast<index_t>(row.completion.size());
    if (!row.completion.empty()) tr.modality = row.completion[0].modality;
    for (std::size_t t = 0; t < row.completion.size(); ++t) {
      corl::require(row.completion[t].modality == tr.modality && tr.modality != Modality::image_in,
                    "ulm::Model::score: rows[", r, "].completion[", t,
                    "]: completions must be all text or all image_out tokens");
    }
    tr.cfg = tr.modality == Modality::image_out && options.cfg_weight != 1.0;
    Pending pd{add_seq(row.prompt, row.completion), -1};
    if (tr.cfg) pd.uncond_seg = add_seq(unconditional_prompt(row.prompt, c), row.completion);
    T.rows.push_back(tr);
    pend.push_back(pd);
  }
  check_tokens<Real>(c, tokens, "ulm::Model::score");
  const Mat<Real> hf = trunk_forward<Real>(c, ix, P, rope_, tokens, segs, nullptr, &T.trunk);

  // target columns: completion token t is predicted by the hidden state at (prompt length + t - 1)
  for (std::size_t r = 0; r < rows.size(); ++r) {
    auto& tr = T.rows[r];
    auto& cols = tr.modality == Modality::text ? T.text_cols : T.image_cols;
    const index_t plen = static_cast<index_t>(rows[r].prompt.size());
    tr.cond_first = static_cast<index_t>(cols.size());
    for (index_t t = 0; t < tr.n; ++t) cols.push_back(segs[static_cast<std::size_t>(pend[r].cond_seg)].start + plen + t - 1);
    if (tr.cfg) {
      tr.uncond_first = static_cast<index_t>(cols.size());
      for (index_t t = 0; t < tr.n; ++t)
        cols.push_back(segs[static_cast<std::size_t>(pend[r].uncond_seg)].start + plen + t - 1);
    }
  }
  const Mat<Real> text_logits = text_head<Real>(c, ix, P, gather_cols(hf, T.text_cols));
  const Mat<Real> image_logits = image_head<Real>(c, ix, P, gather_cols(hf, T.image_cols), &T.image_z1);

  const Real inv_t = Real(1) / T.temperature, w = T.cfg_weight;
  result.logp.resize(rows.size());
  result.logits.resize(rows.size());
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const auto& tr = T.rows[r];
    const Mat<Real>& L = tr.modality == Modality::text ? text_logits : image_logits;
    Mat<Real> z = L.middleCols(tr.cond_first, tr.n);
    if (tr.cfg) z = L.middleCols(tr.uncond_first, tr.n) + w * (z - L.middleCols(tr.uncond_first, tr.n));
    z *= inv_t;
    result.logp[r].resize(static_cast<std::size_t>(tr.n));
    for (index_t t = 0; t < tr.n; ++t) {
      const Vec<Real> ls = layers::log_softmax<Real>(z.col(t));
      result.logp[r][static_cast<std::size_t>(t)] = ls(rows[r].completion[static_cast<std::size_t>(t)].id);
    }
    result.logits[r] = std::move(z);
  }
  // keep the target ids for the backward from dlogp
  return result;
}

template <class Real>
void Model<Real>::backward_logits(const Scored<Real>& scored, const std::vector<Mat<Real>>& dlogits,
                                  std::span<Real> grad) const {
  const ModelConfig& c = config_;
  corl::require(scored.tape != nullptr, "ulm::Model::backward_logits: the Scored result has no tape");
  const Tape<Real>& T = *scored.tape;
  corl::require(grad.size() == params_.size(), "ulm::Model::backward_logits: grad has ", grad.size(),
                " elements, expected ", params_.size());
  corl::require(dlogits.size() == T.rows.size(), "ulm::Model::backward_logits: dlogits has ", dlogits.size(),
                " rows, expected ", T.rows.size());
  const Index ix = make_index(layout_, c.n_layers);
  const Real* P = forward_data(T.factored_params, params_);
  Real* G = grad.data();
  const index_t d = c.d_model;
  Mat<Real> dtext = Mat<Real>::Zero(c.text_vocab, static_cast<index_t>(T.text_cols.size()));
  Mat<Real> dimage = Mat<Real>::Zero(c.image_vocab, static_cast<index_t>(T.image_cols.size()));
  const Real inv_t = Real(1) / T.temperature, w = T.cfg_weight;
  for (std::size_t r = 0; r < T.rows.size(); ++r) {
    const auto& tr = T.rows[r];
    const index_t vocab = tr.modality == Modality::text ? c.text_vocab : c.image_vocab;
    corl::require(dlogits[r].rows() == vocab && dlogits[r].cols() == tr.n, "ulm::Model::backward_logits: dlogits[",
                  r, "] is ", dlogits[r].rows(), " x ", dlogits[r].cols(), ", expected ", vocab, " x ", tr.n);
    Mat<Real>& D = tr.modality == Modality::text ? dtext : dimage;
    const Mat<Real> dmix = dlogits[r] * inv_t;
    if (tr.cfg) {
      D.middleCols(tr.cond_first, tr.n) += w * dmix;
      D.middleCols(tr.uncond_first, tr.n) += (Real(1) - w) * dmix;
    } else {
      D.middleCols(tr.cond_first, tr.n) += dmix;
    }
  }
  CodeGradientFold<Real> fold(c, ix, G);  // inputs checked: from here on only G is written
  const Mat<Real>& hf = T.trunk.hf;
  Mat<Real> dhf = Mat<Real>::Zero(d, hf.cols());
  if (!T.text_cols.empty()) {
    const Mat<Real> h = gather_cols(hf, T.text_cols);
    mw(G, ix.lm_head, c.text_vocab, d).noalias() += dtext * h.transpose();
    const Mat<Real> dh = cw(P, ix.lm_head, c.text_vocab, d).transpose() * dtext;
    for (std::size_t i = 0; i < T.text_cols.size(); ++i) dhf.col(T.text_cols[i]) += dh.col(static_cast<index_t>(i));
  }
  if (!T.image_cols.empty()) {
    const Mat<Real> h = gather_cols(hf, T.image_cols);
    const Mat<Real> a = T.image_z1.unaryExpr([](Real x) { return layers::gelu(x); });
    mw(G, ix.g2w, c.image_vocab, d).noalias() += dimage * a.transpose();
    mv(G, ix.g2b, c.image_vocab) += dimage.rowwise().sum();
    Mat<Real> dz1 = cw(P, ix.g2w, c.image_vocab, d).transpose() * dimage;
    for (index_t k = 0; k < dz1.size(); ++k) dz1.data()[k] *= layers::gelu_grad(T.image_z1.data()[k]);
    mw(G, ix.g0w, d, d).noalias() += dz1 * h.transpose();
    mv(G, ix.g0b, d) += dz1.rowwise().sum();
    const Mat<Real> dh = cw(P, ix.g0w, d, d).transpose() * dz1;
    for (std::size_t i = 0; i < T.image_cols.size(); ++i) dhf.col(T.image_cols[i]) += dh.col(static_cast<index_t>(i));
  }
  trunk_backward<Real>(c, ix, P, rope_, T.trunk, dhf, G);
  fold.give_back();
}

template <class Real>
void Model<Real>::backward(const Scored<Real>& scored, const std::vector<std::vector<Real>>& dlogp,
                           std::span<Real> grad) const {
  backward_impl(scored, dlogp, nullptr, grad);
}

template <class Real>
void Model<Real>::backward(const Scored<Real>& scored, const std::vector<std::vector<Real>>& dlogp,
                           const std::vector<std::vector<Real>>& dentropy, std::span<Real> grad) const {
  backward_impl(scored, dlogp, &dentropy, grad);
}

template <class Real>
std::vector<std::vector<Real>> Model<Real>::entropy(const Scored<Real>& scored) const {
  std::vector<std::vector<Real>> out(scored.logits.size());
  for (std::size_t r = 0; r < scored.logits.size(); ++r) {
    const Mat<Real>& z = scored.logits[r];
    out[r].resize(static_cast<std::size_t>(z.cols()));
    for (index_t t = 0; t < z.cols(); ++t) {
      const Vec<Real> ls = layers::log_softmax<Real>(z.col(t));
      out[r][static_cast<std::size_t>(t)] = entropy_of_log_softmax<Real>(ls, ls.array().exp().matrix());
    }
  }
  return out;
}

template <class Real>
void Model<Real>::backward_impl(const Scored<Real>& scored, const std::vector<std::vector<Real>>& dlogp,
                                const std::vector<std::vector<Real>>* dentropy, std::span<Real> grad) const {
  corl::require(scored.tape != nullptr, "ulm::Model::backward: the Scored result has no tape");
  const Tape<Real>& T = *scored.tape;
  corl::require(dlogp.size() == T.rows.size(), "ulm::Model::backward: dlogp has ", dlogp.size(), " rows, expected ",
                T.rows.size());
  if (dentropy)
    corl::require(dentropy->size() == T.rows.size(), "ulm::Model::backward: dentropy has ", dentropy->size(),
                  " rows, expected ", T.rows.size());
  // d logp_t / d z = onehot(token) - softmax(z); tokens are recovered from the trunk tape (the completion tokens).
  // d H_t / d z = -p (log p + H).
  std::vector<Mat<Real>> dlogits(T.rows.size());
  for (std::size_t r = 0; r < T.rows.size(); ++r) {
    const auto& tr = T.rows[r];
    corl::require(static_cast<index_t>(dlogp[r].size()) == tr.n, "ulm::Model::backward: dlogp[", r, "] has ",
                  dlogp[r].size(), " entries, expected ", tr.n);
    if (dentropy)
      corl::require(static_cast<index_t>((*dentropy)[r].size()) == tr.n, "ulm::Model::backward: dentropy[", r,
                    "] has ", (*dentropy)[r].size(), " entries, expected ", tr.n);
    const Mat<Real>& z = scored.logits[r];
    Mat<Real> dz(z.rows(), z.cols());
    for (index_t t = 0; t < tr.n; ++t) {
      const Real g = dlogp[r][static_cast<std::size_t>(t)];
      corl::require(std::isfinite(static_cast<double>(g)), "ulm::Model::backward: dlogp[", r, "][", t, "] = ", g,
                    ", expected finite");
      const Vec<Real> ls = layers::log_softmax<Real>(z.col(t));
      dz.col(t) = -g * ls.array().exp().matrix();  // this exact expression: results stay bitwise those of earlier runs
      if (dentropy) {
        const Real e = (*dentropy)[r][static_cast<std::size_t>(t)];
        corl::require(std::isfinite(static_cast<double>(e)), "ulm::Model::backward: dentropy[", r, "][", t, "] = ", e,
                      ", expected finite");
        if (e != Real(0)) {
          const Vec<Real> p = ls.array().exp().matrix();
          const Real h = entropy_of_log_softmax<Real>(ls, p);
          for (index_t v = 0; v < ls.size(); ++v)
            if (std::isfinite(static_cast<double>(ls(v)))) dz(v, t) -= e * p(v) * (ls(v) + h);
        }
      }
      // the token: the last n columns of the cond segment hold the completion
      const index_t col = (tr.modality == Modality::text ? T.text_cols : T.image_cols)
                              [static_cast<std::size_t>(tr.cond_first + t)] + 1;
      dz(T.trunk.tokens[static_cast<std::size_t>(col)].id, t) += g;
    }
    dlogits[r] = std::move(dz);
  }
  backward_logits(scored, dlogits, grad);
}

template <class Real>
Real Model<Real>::cross_entropy(const std::vector<ScoreRow>& rows, std::span<Real> grad, Real grad_scale) const {
  const Scored<Real> s = score(rows, ScoreOptions{});
  index_t count = 0;
  for (const auto& r : s.logp) count += static_cast<index_t>(r.size());
  corl::require(count > 0, "ulm::Model::cross_entropy: the batch has no completion tokens");
  Real total = 0;
  std::vector<std::vector<Real>> dlogp(s.logp.size());
  const Real g = -grad_scale / static_cast<Real>(count);
  for (std::size_t r = 0; r < s.logp.size(); ++r) {
    dlogp[r].assign(s.logp[r].size(), g);
    for (Real lp : s.logp[r]) total -= lp;
  }
  backward(s, dlogp, grad);
  return total / static_cast<Real>(count);
}

template <class Real>
Mat<Real> Model<Real>::hidden_states(const Sequence& sequence) const {
  corl::require(!sequence.empty(), "ulm::Model::hidden_states: empty sequence");
  check_tokens<Real>(config_, sequence, "ulm::Model::hidden_states");
  const Index ix = make_index(layout_, config_.n_layers);
  std::vector<Segment> segs{Segment{0, static_cast<index_t>(sequence.size()), 0, -1}};
  const std::vector<Real> view = factored_view(config_, ix, params_);
  return trunk_forward<Real>(config_, ix, forward_data(view, params_), rope_, sequence, segs, nullptr, nullptr);
}

template <class Real>
std::vector<Sample<Real>> Model<Real>::sample(const std::vector<Sequence>& prompts, Modality modality, int group,
                                              const SampleOptions& opt) const {
  const ModelConfig& c = config_;
  corl::require(modality != Modality::image_in, "ulm::Model::sample: modality must be text or image_out");
  corl::require(group >= 1, "ulm::Model::sample: group = ", group, ", expected >= 1");
  corl::require(opt.temperature >= 0 && std::isfinite(opt.temperature), "ulm::Model::sample: temperature = ",
                opt.temperature, ", expected finite >= 0 (0 = greedy)");
  const Index ix = make_index(layout_, c.n_layers);
  const std::vector<Real> view = factored_view(c, ix, params_);
  const Real* P = forward_data(view, params_);
  const bool image = modality == Modality::image_out;
  const bool cfg = image && opt.cfg_weight != 1.0;
  const int max_new = image ? c.image_tokens : opt.max_new_tokens;
  const std::size_t n_samples = prompts.size() * static_cast<std::size_t>(group);
  corl::require(static_cast<std::uint64_t>(opt.first_stream) + n_samples <= (std::uint64_t{1} << 32),
                "ulm::Model::sample: first_stream = ", opt.first_stream, " + ", n_samples,
                " samples exceeds the 2^32 Philox streams");
  const std::size_t per = cfg ? 2 : 1;  // cache rows per sample: cond (+ uncond)
  std::vector<RowCache<Real>> caches(n_samples * per);
  for (auto& rc : caches) {
    rc.k.assign(static_cast<std::size_t>(c.n_layers), Mat<Real>(c.d_model, c.max_seq));
    rc.v.assign(static_cast<std::size_t>(c.n_layers), Mat<Real>(c.d_model, c.max_seq));
  }
  // prefill: every cache row reads its prompt
  std::vector<Token> tokens;
  std::vector<Segment> segs;
  for (std::size_t s = 0; s < n_samples; ++s) {
    const Sequence& pr = prompts[s / static_cast<std::size_t>(group)];
    corl::require(!pr.empty(), "ulm::Model::sample: prompts[", s / static_cast<std::size_t>(group), "] is empty");
    corl::require(static_cast<index_t>(pr.size()) + max_new <= c.max_seq, "ulm::Model::sample: prompts[",
                  s / static_cast<std::size_t>(group), "] has ", pr.size(), " tokens; with ", max_new,
                  " new tokens that exceeds max_seq = ", c.max_seq);
    for (std::size_t k = 0; k < per; ++k) {
      const Sequence seq = k == 0 ? pr : unconditional_prompt(pr, c);
      segs.push_back(Segment{static_cast<index_t>(tokens.size()), static_cast<index_t>(seq.size()), 0,
                             static_cast<index_t>(s * per + k)});
      tokens.insert(tokens.end(), seq.begin(), seq.end());
    }
  }
  check_tokens<Real>(c, tokens, "ulm::Model::sample");
  Mat<Real> hf = trunk_forward<Real>(c, ix, P, rope_, tokens, segs, &caches, nullptr);
  std::vector<index_t> last(segs.size());
  for (std::size_t i = 0; i < segs.size(); ++i) last[i] = segs[i].start + segs[i].len - 1;
  Mat<Real> h = gather_cols(hf, last);

  std::vector<Sample<Real>> out(n_samples);
  std::vector<char> active(n_samples, 1);
  corl::sampling::SamplingParams params;
  params.temperature = opt.temperature;
  params.top_k = image ? 0 : opt.top_k;
  params.top_p = image ? 1.0 : opt.top_p;
  params.min_p = image ? 0.0 : opt.min_p;
  params.cfg_weight = opt.cfg_weight;
  const index_t vocab = image ? c.image_vocab : c.text_vocab;
  for (int step = 0; step < max_new; ++step) {
    // h holds one column per cache row of the active samples, in sample order
    const Mat<Real> logits = image ? image_head<Real>(c, ix, P, h, nullptr) : text_head<Real>(c, ix, P, h);
    std::vector<std::size_t> act_ids;
    for (std::size_t s = 0; s < n_samples; ++s)
      if (active[s]) act_ids.push_back(s);
    tokens.clear();
    segs.clear();
    const corl::sampling::RngKey key{opt.seed, opt.offset + static_cast<std::uint64_t>(step)};
    for (std::size_t a = 0; a < act_ids.size(); ++a) {
      const std::size_t s = act_ids[a];
      const std::span<const Real> cond(logits.data() + static_cast<index_t>(a * per) * vocab,
                                       static_cast<std::size_t>(vocab));
      const std::span<const Real> uncond =
          cfg ? std::span<const Real>(logits.data() + static_cast<index_t>(a * per + 1) * vocab,
                                      static_cast<std::size_t>(vocab))
              : std::span<const Real>{};
      const auto st = corl::sampling::sample_row<Real, Real>(cond, uncond, params, key,
                                                            opt.first_stream + static_cast<std::uint32_t>(s));
      const int token = static_cast<int>(st.token);
      out[s].tokens.push_back(token);
      out[s].logps.push_back(static_cast<Real>(st.logp));
      const bool stop = !image && token == c.eos_id;
      if (stop) out[s].finished = true;
      if (stop || step + 1 == max_new) {
        active[s] = 0;
        continue;
      }
      for (std::size_t k = 0; k < per; ++k) {
        const index_t cache = static_cast<index_t>(s * per + k);
        segs.push_back(Segment{static_cast<index_t>(tokens.size()), 1, caches[static_cast<std::size_t>(cache)].length,
                               cache});
        tokens.push_back(Token{token, modality});
      }
    }
    if (image)
      for (auto& o : out) o.finished = true;
    if (tokens.empty()) break;
    h = trunk_forward<Real>(c, ix, P, rope_, tokens, segs, &caches, nullptr);
  }
  return out;
}

template <class Real>
double clip_grad_norm(std::span<Real> grad, double max_norm) {
  double sq = 0;
  for (std::size_t i = 0; i < grad.size(); ++i) {
    const double g = static_cast<double>(grad[i]);
    corl::require(std::isfinite(g), "ulm::clip_grad_norm: grad[", i, "] = ", g, ", expected finite");
    sq += g * g;
  }
  const double norm = std::sqrt(sq);
  if (max_norm > 0 && norm > max_norm) {
    const Real scale = static_cast<Real>(max_norm / (norm + 1e-12));
    for (Real& g : grad) g *= scale;
  }
  return norm;
}

template struct TapeDeleter<float>;
template struct TapeDeleter<double>;
template class Model<float>;
template class Model<double>;
template double clip_grad_norm<float>(std::span<float>, double);
template double clip_grad_norm<double>(std::span<double>, double);

}  // namespace ulm
