#include "engine/text/jinja_parser.hpp"

#include <set>

#include "engine/base/error.hpp"

namespace vkt::text::jinja {

namespace {

class Parser {
 public:
  Parser(std::vector<Token> tokens, const std::string& name) : tokens_(std::move(tokens)), name_(name) {}

  Body parse_all() {
    std::string end_tag;
    Body body = parse_body({}, end_tag);
    return body;
  }

 private:
  const Token& peek(size_t ahead = 0) const { return tokens_[std::min(at_ + ahead, tokens_.size() - 1)]; }
  const Token& next() { return tokens_[std::min(at_++, tokens_.size() - 1)]; }
  bool is_op(const char* op, size_t ahead = 0) const {
    return peek(ahead).kind == TokenKind::op && peek(ahead).text == op;
  }
  bool is_name(const char* name, size_t ahead = 0) const {
    return peek(ahead).kind == TokenKind::name && peek(ahead).text == name;
  }
  bool accept_op(const char* op) { return is_op(op) ? (at_++, true) : false; }
  bool accept_name(const char* name) { return is_name(name) ? (at_++, true) : false; }

  [[noreturn]] void fail(const SourcePos& pos, const std::string& what) const {
    throw UserError(name_ + ":" + std::to_string(pos.line) + ":" + std::to_string(pos.column) + ": " + what,
                    "vktune renders the Jinja subset that Hugging Face chat templates use; simplify the template "
                    "in tokenizer_config.json or report it");
  }
  static std::string describe(const Token& token) {
    switch (token.kind) {
      case TokenKind::end:
        return "the end of the template";
      case TokenKind::block_end:
        return "'%}'";
      case TokenKind::output_end:
        return "'}}'";
      case TokenKind::string:
        return "a string";
      default:
        return "'" + token.text + "'";
    }
  }
  void expect_op(const char* op) {
    if (!accept_op(op)) fail(peek().pos, std::string("expected '") + op + "', found " + describe(peek()));
  }
  std::string expect_name() {
    if (peek().kind != TokenKind::name) fail(peek().pos, "expected a name, found " + describe(peek()));
    return next().text;
  }
  void expect_block_end() {
    if (peek().kind != TokenKind::block_end) fail(peek().pos, "expected '%}', found " + describe(peek()));
    at_++;
  }

  // Statements up to one of `ends` (e.g. {"elif", "else", "endif"}); `end_tag` says which one.
  Body parse_body(const std::set<std::string>& ends, std::string& end_tag) {
    Body body;
    while (true) {
      const Token& token = peek();
      if (token.kind == TokenKind::end) {
        if (!ends.empty()) fail(token.pos, "the template ends inside a block: expected {% " + *ends.rbegin() + " %}");
        return body;
      }
      if (token.kind == TokenKind::text) {
        auto node = std::make_unique<Node>(Node{Node::Kind::text, token.pos});
        node->text = next().text;
        body.push_back(std::move(node));
      } else if (token.kind == TokenKind::output_begin) {
        auto node = std::make_unique<Node>(Node{Node::Kind::output, next().pos});
        node->expr = parse_tuple_or_expression();
        if (peek().kind != TokenKind::output_end) fail(peek().pos, "expected '}}', found " + describe(peek()));
        at_++;
        body.push_back(std::move(node));
      } else {
        next();  // {%
        const Token& tag = peek();
        if (tag.kind != TokenKind::name) fail(tag.pos, "expected a tag name after '{%', found " + describe(tag));
        if (ends.count(tag.text)) {
          end_tag = next().text;
          return body;
        }
        body.push_back(parse_statement());
      }
    }
  }

  std::unique_ptr<Node> parse_statement() {
    const Token& tag = next();
    auto node = std::make_unique<Node>(Node{Node::Kind::text, tag.pos});
    std::string end_tag;
    if (tag.text == "if") {
      node->kind = Node::Kind::if_chain;
      node->conditions.push_back(parse_expression());
      expect_block_end();
      while (true) {
        node->bodies.push_back(parse_body({"elif", "else", "endif"}, end_tag));
        if (end_tag == "elif") {
          node->conditions.push_back(parse_expression());
          expect_block_end();
        } else if (end_tag == "else") {
          expect_block_end();
          node->bodies.push_back(parse_body({"endif"}, end_tag));
          break;
        } else {
          break;
        }
      }
    } else if (tag.text == "for") {
      node->kind = Node::Kind::for_loop;
      do node->targets.push_back(expect_name());
      while (accept_op(","));
      if (!accept_name("in")) fail(peek().pos, "expected 'in' in the for loop, found " + describe(peek()));
      node->expr = parse_expression(false);
      if (accept_name("if")) node->conditions.push_back(parse_expression(false));
      if (is_name("recursive")) fail(peek().pos, "recursive for loops are not supported");
      expect_block_end();
      node->bodies.push_back(parse_body({"else", "endfor"}, end_tag));
      if (end_tag == "else") {
        expect_block_end();
        node->bodies.push_back(parse_body({"endfor"}, end_tag));
      }
    } else if (tag.text == "set") {
      node->kind = Node::Kind::set;
      node->targets.push_back(expect_name());
      if (accept_op(".")) {
        node->attribute = true;
        node->targets.push_back(expect_name());
      } else if (is_op(",")) {
        fail(peek().pos, "setting several names at once ({% set a, b = ... %}) is not supported");
      }
      if (accept_op("=")) {
        node->expr = parse_tuple_or_expression();
      } else {
        node->kind = Node::Kind::set_block;
        expect_block_end();
        node->bodies.push_back(parse_body({"endset"}, end_tag));
      }
    } else if (tag.text == "macro") {
      node->kind = Node::Kind::macro;
      node->name = expect_name();
      expect_op("(");
      while (!accept_op(")")) {
        if (!node->params.empty()) expect_op(",");
        if (accept_op(")")) break;
        node->params.push_back(expect_name());
        node->defaults.push_back(accept_op("=") ? parse_expression() : nullptr);
      }
      expect_block_end();
      node->bodies.push_back(parse_body({"endmacro"}, end_tag));
    } else if (tag.text == "generation") {
      // transformers' AssistantTracker extension: the body renders unchanged.
      node->kind = Node::Kind::generation;
      expect_block_end();
      node->bodies.push_back(parse_body({"endgeneration"}, end_tag));
    } else if (tag.text == "break" || tag.text == "continue") {
      node->kind = tag.text == "break" ? Node::Kind::loop_break : Node::Kind::loop_continue;
    } else {
      fail(tag.pos, "the tag {% " + tag.text + " %} is not supported");
    }
    expect_block_end();
    return node;
  }

  ExprPtr make(Expr::Kind kind, const SourcePos& pos, std::string name = {}) {
    auto expr = std::make_unique<Expr>();
    expr->kind = kind;
    expr->pos = pos;
    expr->name = std::move(name);
    return expr;
  }
  ExprPtr binary(const SourcePos& pos, std::string op, ExprPtr left, ExprPtr right) {
    ExprPtr expr = make(Expr::Kind::binary, pos, std::move(op));
    expr->items.push_back(std::move(left));
    expr->items.push_back(std::move(right));
    return expr;
  }

  // `a, b` without brackets is a tuple in {{ }} and set values.
  ExprPtr parse_tuple_or_expression() {
    SourcePos pos = peek().pos;
    ExprPtr first = parse_expression();
    if (!is_op(",")) return first;
    ExprPtr tuple = make(Expr::Kind::tuple, pos);
    tuple->items.push_back(std::move(first));
    while (accept_op(",")) {
      if (peek().kind == TokenKind::block_end || peek().kind == TokenKind::output_end) break;
      tuple->items.push_back(parse_expression());
    }
    return tuple;
  }

  ExprPtr parse_expression(bool with_conditional = true) {
    ExprPtr expr = parse_or();
    while (with_conditional && is_name("if")) {
      SourcePos pos = next().pos;
      ExprPtr conditional = make(Expr::Kind::conditional, pos);
      conditional->items.push_back(std::move(expr));
      conditional->items.push_back(parse_or());
      conditional->items.push_back(accept_name("else") ? parse_expression() : nullptr);
      expr = std::move(conditional);
    }
    return expr;
  }
  // One left-associative level: operand (op operand)*; ops are operator tokens or keywords.
  ExprPtr parse_level(std::initializer_list<const char*> ops, ExprPtr (Parser::*operand)()) {
    ExprPtr left = (this->*operand)();
    while (true) {
      const char* matched = nullptr;
      for (const char* op : ops)
        if (is_op(op) || is_name(op)) matched = op;
      if (!matched) return left;
      SourcePos pos = next().pos;
      left = binary(pos, matched, std::move(left), (this->*operand)());
    }
  }
  ExprPtr parse_or() { return parse_level({"or"}, &Parser::parse_and); }
  ExprPtr parse_and() { return parse_level({"and"}, &Parser::parse_not); }
  ExprPtr parse_not() {
    if (is_name("not")) {
      ExprPtr expr = make(Expr::Kind::unary, next().pos, "not");
      expr->items.push_back(parse_not());
      return expr;
    }
    return parse_compare();
  }
  ExprPtr parse_compare() {
    ExprPtr left = parse_math1();
    while (true) {
      SourcePos pos = peek().pos;
      std::string op;
      if (peek().kind == TokenKind::op && (peek().text == "==" || peek().text == "!=" || peek().text == "<" ||
                                           peek().text == "<=" || peek().text == ">" || peek().text == ">=")) {
        op = next().text;
      } else if (accept_name("in")) {
        op = "in";
      } else if (is_name("not") && is_name("in", 1)) {
        at_ += 2;
        op = "not in";
      } else {
        return left;
      }
      left = binary(pos, op, std::move(left), parse_math1());
    }
  }
  ExprPtr parse_math1() { return parse_level({"+", "-"}, &Parser::parse_concat); }
  ExprPtr parse_concat() { return parse_level({"~"}, &Parser::parse_math2); }
  ExprPtr parse_math2() { return parse_level({"*", "/", "//", "%"}, &Parser::parse_pow); }
  ExprPtr parse_pow() { return parse_level({"**"}, &Parser::parse_filtered_unary); }
  ExprPtr parse_filtered_unary() { return parse_unary(true); }
  ExprPtr parse_unary(bool with_filter = true) {
    ExprPtr expr;
    if (is_op("-") || is_op("+")) {
      const Token& op = next();
      expr = make(Expr::Kind::unary, op.pos, op.text);
      expr->items.push_back(parse_unary(false));
    } else {
      expr = parse_postfix(parse_primary());
    }
    return with_filter ? parse_filters_and_tests(std::move(expr)) : std::move(expr);
  }

  ExprPtr parse_primary() {
    const Token& token = next();
    switch (token.kind) {
      case TokenKind::name: {
        const std::string& n = token.text;
        ExprPtr literal = make(Expr::Kind::literal, token.pos);
        if (n == "true" || n == "True")
          literal->value = true;
        else if (n == "false" || n == "False")
          literal->value = false;
        else if (n == "none" || n == "None")
          literal->value = nullptr;
        else
          return make(Expr::Kind::name, token.pos, n);
        return literal;
      }
      case TokenKind::string: {
        ExprPtr literal = make(Expr::Kind::literal, token.pos);
        std::string text = token.text;
        while (peek().kind == TokenKind::string) text += next().text;  // adjacent literals join, as in Python
        literal->value = text;
        return literal;
      }
      case TokenKind::integer: {
        ExprPtr literal = make(Expr::Kind::literal, token.pos);
        literal->value = std::stoll(token.text);
        return literal;
      }
      case TokenKind::floating: {
        ExprPtr literal = make(Expr::Kind::literal, token.pos);
        literal->value = std::stod(token.text);
        return literal;
      }
      case TokenKind::op:
        if (token.text == "(") {
          if (accept_op(")")) return make(Expr::Kind::tuple, token.pos);
          ExprPtr first = parse_expression();
          if (accept_op(")")) return first;
          ExprPtr tuple = make(Expr::Kind::tuple, token.pos);
          tuple->items.push_back(std::move(first));
          while (accept_op(",")) {
            if (is_op(")")) break;
            tuple->items.push_back(parse_expression());
          }
          expect_op(")");
          return tuple;
        }
        if (token.text == "[") {
          ExprPtr list = make(Expr::Kind::list, token.pos);
          while (!accept_op("]")) {
            if (!list->items.empty()) expect_op(",");
            if (accept_op("]")) break;
            list->items.push_back(parse_expression());
          }
          return list;
        }
        if (token.text == "{") {
          ExprPtr dict = make(Expr::Kind::dict, token.pos);
          while (!accept_op("}")) {
            if (!dict->items.empty()) expect_op(",");
            if (accept_op("}")) break;
            dict->items.push_back(parse_expression());
            expect_op(":");
            dict->items.push_back(parse_expression());
          }
          return dict;
        }
        break;
      default:
        break;
    }
    fail(token.pos, "expected a value, found " + describe(token));
  }

  // Arguments after `(` up to `)`; call.items[0] is the callee or the filtered/tested value.
  void parse_call_arguments(Expr& call) {
    for (int count = 0; !accept_op(")"); count++) {
      if (count > 0) expect_op(",");
      if (accept_op(")")) break;
      if (is_op("*") || is_op("**")) fail(peek().pos, "*args and **kwargs in calls are not supported");
      if (peek().kind == TokenKind::name && is_op("=", 1)) {
        std::string key = next().text;
        next();
        call.kwargs.emplace_back(key, parse_expression());
      } else {
        if (!call.kwargs.empty()) fail(peek().pos, "a positional argument after a keyword argument");
        call.items.push_back(parse_expression());
      }
    }
  }

  ExprPtr parse_postfix(ExprPtr expr) {
    while (true) {
      if (is_op(".")) {
        SourcePos pos = next().pos;
        ExprPtr attribute;
        if (peek().kind == TokenKind::integer) {  // `items.0` is items[0] in Jinja
          attribute = make(Expr::Kind::subscript, pos);
          attribute->items.push_back(std::move(expr));
          ExprPtr index = make(Expr::Kind::literal, peek().pos);
          index->value = std::stoll(next().text);
          attribute->items.push_back(std::move(index));
        } else {
          attribute = make(Expr::Kind::attribute, pos, expect_name());
          attribute->items.push_back(std::move(expr));
        }
        expr = std::move(attribute);
      } else if (is_op("[")) {
        SourcePos pos = next().pos;
        ExprPtr parts[3];
        bool slice = false;
        for (int part = 0; part < 3; part++) {
          if (!is_op(":") && !is_op("]")) parts[part] = parse_expression();
          if (!accept_op(":")) break;
          slice = true;
        }
        expect_op("]");
        ExprPtr access = make(slice ? Expr::Kind::slice : Expr::Kind::subscript, pos);
        access->items.push_back(std::move(expr));
        if (!slice && !parts[0]) fail(pos, "an empty subscript []");
        for (int part = 0; part < (slice ? 3 : 1); part++) access->items.push_back(std::move(parts[part]));
        expr = std::move(access);
      } else if (is_op("(")) {
        expr = parse_call(std::move(expr));
      } else {
        return expr;
      }
    }
  }

  ExprPtr parse_call(ExprPtr callee) {
    next();                                              // (
    ExprPtr call = make(Expr::Kind::call, callee->pos);  // errors point at the callee
    call->items.push_back(std::move(callee));
    parse_call_arguments(*call);
    return call;
  }

  ExprPtr parse_filters_and_tests(ExprPtr expr) {
    while (true) {
      if (is_op("|")) {
        next();
        SourcePos pos = peek().pos;
        ExprPtr filter = make(Expr::Kind::filter, pos, expect_name());
        filter->items.push_back(std::move(expr));
        if (accept_op("(")) parse_call_arguments(*filter);
        expr = std::move(filter);
      } else if (is_name("is")) {
        next();
        bool negated = accept_name("not");
        SourcePos pos = peek().pos;
        ExprPtr test = make(Expr::Kind::test, pos, expect_name());
        test->negated = negated;
        test->items.push_back(std::move(expr));
        const Token& arg = peek();
        if (accept_op("(")) {
          parse_call_arguments(*test);
        } else if ((arg.kind == TokenKind::name || arg.kind == TokenKind::string || arg.kind == TokenKind::integer ||
                    arg.kind == TokenKind::floating || is_op("[") || is_op("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and")) {
          test->items.push_back(parse_postfix(parse_primary()));  // `x is divisibleby 3`
        }
        expr = std::move(test);
      } else if (is_op("(")) {
        expr = parse_call(std::move(expr));
      } else {
        return expr;
      }
    }
  }

  std::vector<Token> tokens_;
  size_t at_ = 0;
  const std::string& name_;
};

}  // namespace

std::shared_ptr<const Template> parse_template(const std::string& source, const std::string& name) {
  auto result = std::make_shared<Template>();
  result->name = name;
  result->body = Parser(lex(source, name), name).parse_all();
  return result;
}

}  // namespace vkt::text::jinja
