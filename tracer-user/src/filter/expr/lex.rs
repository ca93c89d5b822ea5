//! Splitting a filter expression into tokens.

/// ss's operators, longest first where one begins another: each is a
/// token of its own, wherever it stands.
const OPERATORS: [&str; 12] = [
    "&&", "||", "!=", "==", "<=", ">=", "&", "|", "!", "=", "<", ">",
];

/// Splits on white space, and around parentheses and operators (none of
/// which appear in addresses, ports or paths), taking the longest
/// operator at each place: `dport=:443&&!sport=:80` is `dport`, `=`,
/// `:443`, `&&`, `!`, `sport`, `=`, `:80`, and `!!x` is `!`, `!`, `x`.
/// A run ss refuses (`=>`, `&&&`) lexes into operators the parser then
/// refuses, naming the one out of place.
pub(super) fn lex(text: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    for word in text.split_whitespace() {
        let mut rest = word;
        while !rest.is_empty() {
            let len = if rest.starts_with(['(', ')']) {
                1
            } else if let Some(op) = OPERATORS.iter().find(|op| rest.starts_with(**op)) {
                op.len()
            } else {
                rest.find(|c: char| "()&|!=<>".contains(c))
                    .unwrap_or(rest.len())
            };
            let (token, after) = rest.split_at(len);
            tokens.push(token);
            rest = after;
        }
    }
    tokens
}
