#include "trainer/models.h"

#include <cmath>

namespace nino::trainer {

namespace nn = torch::nn;

VisionNetImpl::VisionNetImpl(const VisionNetOptions& o) : conv_(o.conv) {
  TORCH_CHECK(!o.hid.empty(), "VisionNet needs at least one hidden layer");
  TORCH_CHECK(o.kernel_size >= 1 && o.kernel_size % 2 == 1,
              "VisionNet kernel_size must be odd, not ", o.kernel_size);
  nn::Sequential seq;
  int64_t prev = o.conv ? o.in_channels : o.in_channels * o.image_size * o.image_size;
  for (size_t i = 0; i < o.hid.size(); ++i) {
    if (o.conv) {
      // First conv: stride 2, no padding; the others stride 1, 'same' padding (official Net).
      auto opt = nn::Conv2dOptions(prev, o.hid[i], o.kernel_size)
                     .stride(i == 0 ? 2 : 1)
                     .padding(i == 0 ? 0 : o.kernel_size / 2);
      seq->push_back(nn::Conv2d(opt));
    } else {
      seq->push_back(nn::Linear(prev, o.hid[i]));
    }
    seq->push_back(nn::ReLU());
    prev = o.hid[i];
  }
  if (o.conv) {
    seq->push_back(nn::AdaptiveAvgPool2d(1));
    seq->push_back(nn::Flatten());
  }
  seq->push_back(nn::Linear(prev, o.num_classes));
  fc_ = register_module("fc", seq);
}

torch::Tensor VisionNetImpl::forward(const torch::Tensor& x) {
  return fc_->forward(conv_ ? x : x.reshape({x.size(0), -1}));
}

Conv1DImpl::Conv1DImpl(int64_t in, int64_t out, double std) {
  weight = register_parameter("weight", torch::randn({in, out}) * std);
  bias = register_parameter("bias", torch::zeros({out}));
}

torch::Tensor Conv1DImpl::forward(const torch::Tensor& x) {
  return torch::matmul(x, weight) + bias;
}

namespace {

// GPT-2 attention: c_attn projects to q|k|v, causal softmax attention, c_proj back.
class AttentionImpl : public nn::Module {
 public:
  AttentionImpl(const Gpt2Options& o) : heads_(o.n_head) {
    c_attn = register_module("c_attn", Conv1D(o.n_embd, 3 * o.n_embd, o.init_std));
    c_proj = register_module("c_proj",
                             Conv1D(o.n_embd, o.n_embd, o.init_std / std::sqrt(2.0 * o.n_layer)));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    const int64_t B = x.size(0), T = x.size(1), D = x.size(2), hd = D / heads_;
    auto qkv = c_attn->forward(x).split(D, 2);
    auto heads = [&](const torch::Tensor& t) { return t.view({B, T, heads_, hd}).transpose(1, 2); };
    torch::Tensor q = heads(qkv[0]), k = heads(qkv[1]), v = heads(qkv[2]);
    torch::Tensor att = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(hd));
    torch::Tensor mask = torch::ones({T, T}, torch::kBool).triu(1);
    att = att.masked_fill(mask, -std::numeric_limits<float>::infinity()).softmax(-1);
    torch::Tensor y = torch::matmul(att, v).transpose(1, 2).contiguous().view({B, T, D});
    return c_proj->forward(y);
  }
  Conv1D c_attn{nullptr}, c_proj{nullptr};

 private:
  int64_t heads_;
};
TORCH_MODULE(Attention);

class MlpImpl : public nn::Module {
 public:
  MlpImpl(const Gpt2Options& o) {
    c_fc = register_module("c_fc", Conv1D(o.n_embd, 4 * o.n_embd, o.init_std));
    c_proj = register_module(
        "c_proj", Conv1D(4 * o.n_embd, o.n_embd, o.init_std / std::sqrt(2.0 * o.n_layer)));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return c_proj->forward(torch::gelu(c_fc->forward(x), "tanh"));
  }
  Conv1D c_fc{nullptr}, c_proj{nullptr};
};
TORCH_MODULE(Mlp);

class BlockImpl : public nn::Module {
 public:
  BlockImpl(const Gpt2Options& o) {
    ln_1 = register_module("ln_1", nn::LayerNorm(nn::LayerNormOptions({o.n_embd}).eps(1e-5)));
    attn = register_module("attn", Attention(o));
    ln_2 = register_module("ln_2", nn::LayerNorm(nn::LayerNormOptions({o.n_embd}).eps(1e-5)));
    mlp = register_module("mlp", Mlp(o));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = x + attn->forward(ln_1->forward(x));
    return x + mlp->forward(ln_2->forward(x));
  }
  nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  Attention attn{nullptr};
  Mlp mlp{nullptr};
};
TORCH_MODULE(Block);

}  // namespace

Gpt2LMImpl::Gpt2LMImpl(const Gpt2Options& o) : o_(o) {
  TORCH_CHECK(o.n_embd % o.n_head == 0, "n_embd ", o.n_embd, " is not divisible by n_head ",
              o.n_head);
  auto transformer = std::make_shared<nn::Module>();
  wte_ = transformer->register_module("wte", nn::Embedding(o.vocab_size, o.n_embd));
  wpe_ = transformer->register_module("wpe", nn::Embedding(o.n_positions, o.n_embd));
  torch::NoGradGuard no_grad;
  wte_->weight.normal_(0, o.init_std);
  wpe_->weight.normal_(0, o.init_std / 2);
  auto h = std::make_shared<nn::Module>();
  for (int64_t b = 0; b < o.n_layer; ++b) {
    auto block = h->register_module(std::to_string(b), Block(o));
    blocks_.push_back(block);
  }
  transformer->register_module("h", h);
  ln_f_ = transformer->register_module("ln_f",
                                       nn::LayerNorm(nn::LayerNormOptions({o.n_embd}).eps(1e-5)));
  transformer_ = register_module("transformer", transformer).get();
}

torch::Tensor Gpt2LMImpl::forward(const torch::Tensor& tokens) {
  const int64_t T = tokens.size(1);
  TORCH_CHECK(T <= o_.n_positions, "sequence of ", T, " tokens exceeds n_positions ",
              o_.n_positions);
  torch::Tensor pos = torch::arange(T, tokens.options().dtype(torch::kInt64));
  torch::Tensor x = wte_->forward(tokens) + wpe_->forward(pos).unsqueeze(0);
  for (auto& b : blocks_) x = std::static_pointer_cast<BlockImpl>(b)->forward(x);
  x = ln_f_->forward(x);
  return torch::matmul(x, wte_->weight.t());  // tied lm_head
}

}  // namespace nino::trainer
