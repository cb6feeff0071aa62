/**
 * What the shell classifier knows about tree-sitter-bash nodes: the node
 * types of the grammar, which constructs to report, where parse errors are,
 * and what a redirection feeds a command on its standard input.
 */
import type { Node } from 'web-tree-sitter';
import { wordOf } from './shell-words.ts';

/** Every named node type of tree-sitter-bash 0.25 (src/node-types.json). Others would mean a grammar change. */
export const KNOWN_TYPES = new Set([
  'program',
  'arithmetic_expansion',
  'array',
  'binary_expression',
  'brace_expression',
  'c_style_for_statement',
  'case_item',
  'case_statement',
  'command',
  'command_name',
  'command_substitution',
  'compound_statement',
  'concatenation',
  'declaration_command',
  'do_group',
  'elif_clause',
  'else_clause',
  'expansion',
  'file_redirect',
  'for_statement',
  'function_definition',
  'heredoc_body',
  'heredoc_redirect',
  'herestring_redirect',
  'if_statement',
  'list',
  'negated_command',
  'number',
  'parenthesized_expression',
  'pipeline',
  'postfix_expression',
  'process_substitution',
  'redirected_statement',
  'simple_expansion',
  'string',
  'subscript',
  'subshell',
  'ternary_expression',
  'test_command',
  'translated_string',
  'unary_expression',
  'unset_command',
  'variable_assignment',
  'variable_assignments',
  'while_statement',
  'word',
  'ansi_c_string',
  'comment',
  'extglob_pattern',
  'file_descriptor',
  'heredoc_content',
  'heredoc_end',
  'heredoc_start',
  'raw_string',
  'regex',
  'special_variable_name',
  'string_content',
  'test_operator',
  'variable_name',
]);

/** Nodes whose statements run one after another: two or more of them make a list. */
export const SEQUENCE_PARENTS = new Set([
  'program',
  'compound_statement',
  'subshell',
  'do_group',
  'command_substitution',
  'process_substitution',
  'if_statement',
  'elif_clause',
  'else_clause',
  'case_item',
]);

export const STATEMENT_TYPES = new Set([
  'command',
  'pipeline',
  'list',
  'subshell',
  'compound_statement',
  'redirected_statement',
  'if_statement',
  'for_statement',
  'c_style_for_statement',
  'while_statement',
  'case_statement',
  'function_definition',
  'negated_command',
  'test_command',
  'declaration_command',
  'unset_command',
  'variable_assignment',
  'variable_assignments',
]);

export const WRITE_OPS = new Set(['>', '>>', '&>', '&>>', '>|', '<>']);

/** Standard input of a command: a literal script (here-doc / here-string) or something unseen. */
export type Stdin = { script: string } | { unseen: true };

export function structureOf(node: Node): string | undefined {
  const first = node.child(0)?.type;
  switch (node.type) {
    case 'pipeline':
    case 'list':
    case 'subshell':
    case 'process_substitution':
    case 'function_definition':
    case 'case_statement':
      return node.type === 'case_statement' ? 'case' : node.type;
    case 'command_substitution':
      return first === '`' ? 'backticks' : 'command_substitution';
    case 'if_statement':
      return 'if';
    case 'for_statement':
      return first === 'select' ? 'select' : 'for';
    case 'c_style_for_statement':
      return 'for';
    case 'while_statement':
      return first === 'until' ? 'until' : 'while';
    case 'compound_statement':
      return first === '((' ? 'arithmetic' : 'group';
    case 'negated_command':
      return 'negation';
    case 'test_command':
      return 'test';
    default:
      return undefined;
  }
}

/** The first error or missing node, as a safe position message. */
export function firstError(node: Node): string | undefined {
  if (node.isError || node.isMissing) {
    const p = node.startPosition;
    const what = node.isMissing ? `missing ${JSON.stringify(node.type)}` : 'syntax error';
    return `${what} at line ${p.row + 1}, column ${p.column + 1}`;
  }
  if (!node.hasError) return undefined;
  for (const c of node.children) {
    const e = c ? firstError(c) : undefined;
    if (e) return e;
  }
  return undefined;
}

/** What the last stdin redirection among these feeds the command: a literal script, or something unseen. */
export function stdinOf(redirects: Node[]): Stdin | undefined {
  let stdin: Stdin | undefined;
  for (const r of redirects) {
    if (r.type === 'heredoc_redirect') stdin = heredocScript(r);
    else if (r.type === 'herestring_redirect') {
      const w = r.namedChildren.find((c) => c && c.type !== 'file_descriptor');
      const word = w ? wordOf(w) : undefined;
      stdin = word?.literal ? { script: `${word.value}\n` } : { unseen: true };
    } else if (r.type === 'file_redirect' && /^</.test(redirectOp(r)) && (r.childForFieldName('descriptor')?.text ?? '0') === '0') {
      stdin = { unseen: true };
    }
  }
  return stdin;
}

/** The operator of a redirect node: its first anonymous child. */
export function redirectOp(node: Node): string {
  return node.children.find((c) => c !== null && !c.isNamed)?.type ?? '?';
}

/** A here-doc feeding a command: literal when its delimiter is quoted or its body has no expansion or escape. */
function heredocScript(node: Node): Stdin {
  const start = node.namedChildren.find((c) => c?.type === 'heredoc_start');
  const body = node.namedChildren.find((c) => c?.type === 'heredoc_body');
  if (!body) return { script: '' };
  const quoted = /['"\\]/.test(start?.text ?? '');
  const plain = body.namedChildren.every((c) => c?.type === 'heredoc_content') && !body.text.includes('\\');
  return quoted || plain ? { script: body.text } : { unseen: true };
}
