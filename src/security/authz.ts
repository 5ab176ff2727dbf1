/**
 * Authorization objects (QEMU's authz/): who may connect, decided on an identity string — for
 * TLS x509 sessions the peer certificate's distinguished name (distinguished-name.ts).
 *
 *   authz-simple  one identity, compared exactly (authz/simple.c)
 *   authz-list    ordered rules, each `exact` or `glob`, first match decides; no match falls
 *                 back to the list's policy, `deny` by default (authz/list.c)
 */

export const QAUTHZ_LIST_POLICIES = ['deny', 'allow'] as const;
export type QAuthZListPolicy = (typeof QAUTHZ_LIST_POLICIES)[number];

export const QAUTHZ_LIST_FORMATS = ['exact', 'glob'] as const;
export type QAuthZListFormat = (typeof QAUTHZ_LIST_FORMATS)[number];

/** `QAuthZListRule`. */
export interface QAuthZListRule {
  readonly match: string;
  readonly policy: QAuthZListPolicy;
  /** Default `exact`. */
  readonly format?: QAuthZListFormat;
}

/** Most rules one list accepts (a bound for input; QEMU has none). */
export const QAUTHZ_LIST_MAX_RULES = 1024;

/** The `QAuthZ` class: `is_allowed`. */
export interface QAuthZ {
  readonly id: string;
  readonly type: 'authz-simple' | 'authz-list';
  isAllowed(identity: string): boolean;
}

export class QAuthZSimple implements QAuthZ {
  readonly id: string;
  readonly type = 'authz-simple';
  readonly identity: string;

  constructor(id: string, identity: string) {
    this.id = id;
    this.identity = identity;
  }

  isAllowed(identity: string): boolean {
    return identity === this.identity;
  }
}

export class QAuthZList implements QAuthZ {
  readonly id: string;
  readonly type = 'authz-list';
  readonly policy: QAuthZListPolicy;
  readonly rules: readonly QAuthZListRule[];

  constructor(id: string, policy: QAuthZListPolicy, rules: readonly QAuthZListRule[]) {
    this.id = id;
    this.policy = policy;
    this.rules = rules.map((r) => ({ ...r }));
  }

  isAllowed(identity: string): boolean {
    for (const rule of this.rules) {
      const hit =
        (rule.format ?? 'exact') === 'glob'
          ? globMatch(rule.match, identity)
          : rule.match === identity;
      if (hit) return rule.policy === 'allow';
    }
    return this.policy === 'allow';
  }
}

/**
 * GLib's `g_pattern_match_simple`: `*` matches any run of characters (also none), `?` exactly
 * one; there is no escape. Greedy with one backtrack point, so O(pattern × text) at worst.
 */
export function globMatch(pattern: string, text: string): boolean {
  const p = [...pattern];
  const t = [...text];
  let pi = 0;
  let ti = 0;
  let starP = -1;
  let starT = 0;
  while (ti < t.length) {
    if (pi < p.length && (p[pi] === '?' || (p[pi] !== '*' && p[pi] === t[ti]))) {
      pi++;
      ti++;
    } else if (pi < p.length && p[pi] === '*') {
      starP = pi++;
      starT = ti;
    } else if (starP >= 0) {
      pi = starP + 1;
      ti = ++starT;
    } else {
      return false;
    }
  }
  while (pi < p.length && p[pi] === '*') pi++;
  return pi === p.length;
}
