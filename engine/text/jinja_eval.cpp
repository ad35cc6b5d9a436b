#include "engine/text/jinja_eval.hpp"

#include <cmath>
#include <map>

#include "engine/text/jinja_builtins.hpp"

namespace vkt::text::jinja {

namespace {

enum class Flow { normal, loop_break, loop_continue };
using Scope = std::map<std::string, Value>;

// Python's % and // round toward negative infinity.
int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

class Renderer {
 public:
  Renderer(const Template& tmpl, const Json& variables, RenderTrace* trace) : tmpl_(tmpl), trace_(trace) {
    if (variables.contains("messages") && variables["messages"].is_array()) messages_ = &variables["messages"];
    scopes_.emplace_back();
    for (auto it = variables.begin(); it != variables.end(); ++it) scopes_[0][it.key()] = Value::of(it.value());
  }

  std::string run() {
    std::string out;
    top_out_ = &out;
    exec(tmpl_.body, out);
    return out;
  }

 private:
  Where where(const SourcePos& pos) const { return {&tmpl_.name, pos}; }

  Value lookup(const std::string& name) const {
    for (auto scope = scopes_.rbegin(); scope != scopes_.rend(); ++scope) {
      auto found = scope->find(name);
      if (found != scope->end()) return found->second;
    }
    if (is_global_function(name)) return Value::builtin(name);
    return Value::undefined("'" + name + "' is undefined");
  }

  Flow exec(const Body& body, std::string& out) {
    for (const auto& node : body) {
      Flow flow = exec(*node, out);
      if (flow != Flow::normal) return flow;
    }
    return Flow::normal;
  }

  Flow exec(const Node& node, std::string& out) {
    switch (node.kind) {
      case Node::Kind::text:
        out += node.text;
        break;
      case Node::Kind::output:
        out += to_str(eval(*node.expr));
        break;
      case Node::Kind::if_chain:
        for (size_t branch = 0; branch < node.bodies.size(); branch++)
          if (branch >= node.conditions.size() || truthy(eval(*node.conditions[branch])))
            return exec(node.bodies[branch], out);
        break;
      case Node::Kind::for_loop:
        exec_for(node, out);
        break;
      case Node::Kind::set:
        assign(node, eval(*node.expr));
        break;
      case Node::Kind::set_block: {
        std::string captured;
        exec(node.bodies[0], captured);
        assign(node, Value::of(captured));
        break;
      }
      case Node::Kind::macro: {
        Value macro = Value::builtin(node.name);
        macro.macro = &node;
        scopes_.back()[node.name] = macro;
        break;
      }
      case Node::Kind::generation: {  // transformers' assistant-mask block: its body renders as is
        size_t begin = out.size();
        Flow flow = exec(node.bodies[0], out);
        if (trace_ && &out == top_out_) trace_->generation.emplace_back(begin, out.size());
        return flow;
      }
      case Node::Kind::loop_break:
        return Flow::loop_break;
      case Node::Kind::loop_continue:
        return Flow::loop_continue;
    }
    return Flow::normal;
  }

  void assign(const Node& node, Value value) {
    if (!node.attribute) {
      scopes_.back()[node.targets[0]] = std::move(value);
      return;
    }
    Value target = lookup(node.targets[0]);
    if (target.kind != Value::Kind::ns)
      fail_at(where(node.pos), "{% set " + node.targets[0] + "." + node.targets[1] + " %}: '" + node.targets[0] +
                                   "' is a " + type_name(target) + ", and only namespace() objects take attributes");
    target.ns->attributes[node.targets[1]] = value.kind == Value::Kind::data ? value.data() : Json(nullptr);
  }

  void bind_targets(Scope& scope, const Node& node, const Json& item) {
    if (node.targets.size() == 1) {
      scope[node.targets[0]] = Value::of(item);
      return;
    }
    if (!item.is_array() || item.size() != node.targets.size())
      fail_at(where(node.pos),
              "cannot unpack " + repr(item) + " into " + std::to_string(node.targets.size()) + " names");
    for (size_t i = 0; i < node.targets.size(); i++) scope[node.targets[i]] = Value::of(item[i]);
  }

  void exec_for(const Node& node, std::string& out) {
    std::vector<Json> items = iterate(eval(*node.expr), where(node.expr->pos));
    if (!node.conditions.empty()) {  // `for x in xs if cond`: the loop sees only the kept items
      std::vector<Json> kept;
      for (Json& item : items) {
        scopes_.emplace_back();
        bind_targets(scopes_.back(), node, item);
        bool keep = truthy(eval(*node.conditions[0]));
        scopes_.pop_back();
        if (keep) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      if (node.bodies.size() > 1) exec(node.bodies[1], out);
      return;
    }
    const int64_t length = static_cast<int64_t>(items.size());
    std::vector<MessageSpan> spans = trace_ && &out == top_out_ ? match_messages(items) : std::vector<MessageSpan>{};
    const size_t loop_begin = out.size();
    for (int64_t i = 0; i < length; i++) {
      if (!spans.empty()) spans[i].begin = out.size();
      Json loop = {
          {"index0", i},     {"index", i + 1},          {"revindex", length - i}, {"revindex0", length - i - 1},
          {"first", i == 0}, {"last", i == length - 1}, {"length", length},       {"depth", 1},
          {"depth0", 0}};
      if (i > 0) loop["previtem"] = items[i - 1];
      if (i + 1 < length) loop["nextitem"] = items[i + 1];
      scopes_.emplace_back();
      scopes_.back()["loop"] = Value::of(std::move(loop));
      bind_targets(scopes_.back(), node, items[i]);
      Flow flow = exec(node.bodies[0], out);
      scopes_.pop_back();
      if (!spans.empty()) spans[i].end = out.size();
      if (flow == Flow::loop_break) {
        if (!spans.empty()) spans.resize(static_cast<size_t>(i) + 1);
        break;
      }
    }
    if (!spans.empty() && out.size() - loop_begin > traced_bytes_) {
      traced_bytes_ = out.size() - loop_begin;
      trace_->turns = std::move(spans);
    }
  }

  // The messages a loop's items are, in order; empty when the items are not messages in order.
  std::vector<MessageSpan> match_messages(const std::vector<Json>& items) const {
    std::vector<MessageSpan> spans;
    if (!messages_) return spans;
    size_t next = 0;
    for (const Json& item : items) {
      while (next < messages_->size() && (*messages_)[next] != item) next++;
      if (next == messages_->size()) return {};
      spans.push_back({next++, 0, 0});
    }
    return spans;
  }

  Value call_macro(const Node& macro, const Arguments& args, const KeywordArguments& kwargs, const Where& at) {
    if (args.size() > macro.params.size())
      fail_at(at, "macro '" + macro.name + "' takes " + std::to_string(macro.params.size()) + " arguments, got " +
                      std::to_string(args.size()));
    Scope parameters;
    for (size_t i = 0; i < macro.params.size(); i++) {
      if (i < args.size())
        parameters[macro.params[i]] = args[i];
      else if (macro.defaults[i])
        parameters[macro.params[i]] = eval(*macro.defaults[i]);
      else
        parameters[macro.params[i]] = Value::undefined("parameter '" + macro.params[i] + "' was not given");
    }
    for (const auto& [key, value] : kwargs) {
      if (std::find(macro.params.begin(), macro.params.end(), key) == macro.params.end())
        fail_at(at, "macro '" + macro.name + "' has no parameter '" + key + "'");
      parameters[key] = value;
    }
    // A macro sees the template's top-level names and its parameters, not its caller's locals.
    std::vector<Scope> saved = std::move(scopes_);
    scopes_ = {saved[0], std::move(parameters)};
    std::string out;
    exec(macro.bodies[0], out);
    saved[0] = std::move(scopes_[0]);
    scopes_ = std::move(saved);
    return Value::of(out);
  }

  Json as_data(const Value& value, const Where& at) {
    if (value.kind == Value::Kind::data) return value.data();
    if (value.kind == Value::Kind::undefined) return nullptr;
    fail_at(at, std::string("a ") + type_name(value) + " cannot be stored in a list or dict");
  }

  Value attribute_of(const Value& value, const std::string& name, const Where& at) {
    if (value.kind == Value::Kind::undefined) fail_at(at, "cannot read ." + name + ": " + value.name);
    if (value.kind == Value::Kind::ns) {
      auto found = value.ns->attributes.find(name);
      return found == value.ns->attributes.end() ? Value::undefined("the namespace has no attribute '" + name + "'")
                                                 : Value::of(*found);
    }
    if (value.kind == Value::Kind::data) {
      if (is_method(value.data(), name)) return Value::method(value.data(), name);
      if (value.data().is_object() && value.data().contains(name)) return Value::of(value.data()[name]);
    }
    return Value::undefined(std::string("'") + type_name(value) + " object' has no attribute '" + name + "'");
  }

  Value eval(const Expr& expr) {
    const Where at = where(expr.pos);
    switch (expr.kind) {
      case Expr::Kind::literal:
        return Value::of(expr.value);
      case Expr::Kind::name:
        return lookup(expr.name);
      case Expr::Kind::list:
      case Expr::Kind::tuple: {
        Json list = Json::array();
        for (const auto& item : expr.items) list.push_back(as_data(eval(*item), at));
        return Value::of(std::move(list));
      }
      case Expr::Kind::dict: {
        Json dict = Json::object();
        for (size_t i = 0; i < expr.items.size(); i += 2) {
          Value key = eval(*expr.items[i]);
          if (!key.is_string()) fail_at(where(expr.items[i]->pos), "dict keys must be strings here");
          dict[key.data().get<std::string>()] = as_data(eval(*expr.items[i + 1]), at);
        }
        return Value::of(std::move(dict));
      }
      case Expr::Kind::attribute:
        return attribute_of(eval(*expr.items[0]), expr.name, at);
      case Expr::Kind::subscript: {  // jinja2: x[key] tries the item, then the attribute
        Value container = eval(*expr.items[0]);
        Value key = eval(*expr.items[1]);
        if (container.kind == Value::Kind::ns && key.is_string())
          return attribute_of(container, key.data().get<std::string>(), at);
        Value item = item_of(container, key, at);
        if (!item.defined() && key.is_string() && container.kind == Value::Kind::data)
          return attribute_of(container, key.data().get<std::string>(), at);
        return item;
      }
      case Expr::Kind::slice: {
        Arguments bounds;
        for (size_t i = 1; i < 4; i++) bounds.push_back(expr.items[i] ? eval(*expr.items[i]) : Value::of(nullptr));
        return slice_of(eval(*expr.items[0]), bounds[0], bounds[1], bounds[2], at);
      }
      case Expr::Kind::call: {
        Value callee = eval(*expr.items[0]);
        Arguments args;
        KeywordArguments kwargs;
        evaluate_arguments(expr, args, kwargs);
        if (callee.kind != Value::Kind::callable)
          fail_at(at, callee.kind == Value::Kind::undefined
                          ? "cannot call " + callee.name
                          : std::string("a ") + type_name(callee) + " is not callable");
        if (callee.macro) return call_macro(*callee.macro, args, kwargs, at);
        if (callee.is_method) return call_method(callee.self, callee.name, args, kwargs, at);
        return call_global(callee.name, args, kwargs, at);
      }
      case Expr::Kind::filter: {
        Arguments args;
        KeywordArguments kwargs;
        evaluate_arguments(expr, args, kwargs);
        return apply_filter(expr.name, eval(*expr.items[0]), args, kwargs, at);
      }
      case Expr::Kind::test: {
        Arguments args;
        KeywordArguments kwargs;
        evaluate_arguments(expr, args, kwargs);
        return Value::of(apply_test(expr.name, eval(*expr.items[0]), args, at) != expr.negated);
      }
      case Expr::Kind::unary: {
        Value operand = eval(*expr.items[0]);
        if (expr.name == "not") return Value::of(!truthy(operand));
        if (operand.kind != Value::Kind::data || !operand.data().is_number())
          fail_at(at, "unary " + expr.name + " needs a number, got a " + type_name(operand));
        if (expr.name == "+") return operand;
        if (operand.data().is_number_float()) return Value::of(-operand.data().get<double>());
        return Value::of(-operand.data().get<int64_t>());
      }
      case Expr::Kind::binary:
        return eval_binary(expr, at);
      case Expr::Kind::conditional:
        if (truthy(eval(*expr.items[1]))) return eval(*expr.items[0]);
        return expr.items[2] ? eval(*expr.items[2]) : Value::undefined("the if expression has no else");
    }
    fail_at(at, "unknown expression");
  }

  void evaluate_arguments(const Expr& expr, Arguments& args, KeywordArguments& kwargs) {
    for (size_t i = 1; i < expr.items.size(); i++) args.push_back(eval(*expr.items[i]));
    for (const auto& [key, value] : expr.kwargs) kwargs.emplace_back(key, eval(*value));
  }

  Value eval_binary(const Expr& expr, const Where& at) {
    const std::string& op = expr.name;
    Value left = eval(*expr.items[0]);
    if (op == "and") return truthy(left) ? eval(*expr.items[1]) : left;
    if (op == "or") return truthy(left) ? left : eval(*expr.items[1]);
    Value right = eval(*expr.items[1]);
    if (op == "==") return Value::of(equal(left, right));
    if (op == "!=") return Value::of(!equal(left, right));
    if (op == "<") return Value::of(less(left, right, at));
    if (op == ">") return Value::of(less(right, left, at));
    if (op == "<=") return Value::of(!less(right, left, at));
    if (op == ">=") return Value::of(!less(left, right, at));
    if (op == "in" || op == "not in") return Value::of(apply_test("in", left, {right}, at) == (op == "in"));
    if (op == "~") return Value::of(to_str(left) + to_str(right));
    for (const Value* operand : {&left, &right})
      if (operand->kind == Value::Kind::undefined) fail_at(at, "'" + op + "' on an undefined value: " + operand->name);
    return arithmetic(op, left, right, at);
  }

  Value arithmetic(const std::string& op, const Value& left, const Value& right, const Where& at) {
    const Json &a = left.data(), &b = right.data();
    auto mismatch = [&]() -> Value {
      fail_at(at, "unsupported operand types for " + op + ": '" + type_name(left) + "' and '" + type_name(right) + "'");
    };
    if (left.kind != Value::Kind::data || right.kind != Value::Kind::data) return mismatch();
    if (op == "+" && a.is_string() && b.is_string()) return Value::of(a.get<std::string>() + b.get<std::string>());
    if (op == "+" && a.is_array() && b.is_array()) {
      Json joined = a;
      for (const Json& item : b) joined.push_back(item);
      return Value::of(std::move(joined));
    }
    if (op == "*" && ((a.is_string() || a.is_array()) && b.is_number_integer())) {
      Json repeated = a.is_string() ? Json("") : Json::array();
      for (int64_t i = 0; i < b.get<int64_t>(); i++) {
        if (a.is_string())
          repeated = repeated.get<std::string>() + a.get<std::string>();
        else
          for (const Json& item : a) repeated.push_back(item);
      }
      return Value::of(std::move(repeated));
    }
    bool numbers = (a.is_number() || a.is_boolean()) && (b.is_number() || b.is_boolean());
    if (!numbers) return mismatch();
    auto to_int = [](const Json& j) { return j.is_boolean() ? int64_t(j.get<bool>()) : j.get<int64_t>(); };
    bool integers = !a.is_number_float() && !b.is_number_float();
    if (integers && op != "/" && op != "**") {
      int64_t x = to_int(a), y = to_int(b);
      if (op == "+") return Value::of(x + y);
      if (op == "-") return Value::of(x - y);
      if (op == "*") return Value::of(x * y);
      if (y == 0) fail_at(at, "division by zero");
      if (op == "//") return Value::of(floor_div(x, y));
      if (op == "%") return Value::of(x - floor_div(x, y) * y);
    }
    double x = a.is_boolean() ? to_int(a) : a.get<double>(), y = b.is_boolean() ? to_int(b) : b.get<double>();
    if (op == "+") return Value::of(x + y);
    if (op == "-") return Value::of(x - y);
    if (op == "*") return Value::of(x * y);
    if (op == "**") {
      double power = std::pow(x, y);
      return integers && y >= 0 ? Value::of(static_cast<int64_t>(power)) : Value::of(power);
    }
    if (y == 0) fail_at(at, "division by zero");
    if (op == "/") return Value::of(x / y);
    if (op == "//") return Value::of(std::floor(x / y));
    if (op == "%") return Value::of(x - std::floor(x / y) * y);
    return mismatch();
  }

  const Template& tmpl_;
  std::vector<Scope> scopes_;
  RenderTrace* trace_;
  const Json* messages_ = nullptr;
  std::string* top_out_ = nullptr;
  size_t traced_bytes_ = 0;
};

}  // namespace

std::string render(const Template& tmpl, const Json& variables, RenderTrace* trace) {
  if (trace) *trace = {};
  return Renderer(tmpl, variables, trace).run();
}

}  // namespace vkt::text::jinja
