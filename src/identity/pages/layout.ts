import type { PasswordPolicy } from '../policy.ts';
import { stylesheet } from './assets.ts';
import { type HtmlValue, html, type SafeHtml } from './html.ts';

export interface PageShell {
  title: string;
  /** The organisation whose page this is; absent on errors before the tenant is known. */
  tenantName?: string | undefined;
  /** What went wrong with the last submission, read out by screen readers (aria-live). */
  error?: FormError | null | undefined;
  notice?: string | null | undefined;
  /** Tables need more room than a form. */
  wide?: boolean;
}

export interface FormError {
  message: string;
  /** One line per violated rule, e.g. for a rejected password. */
  details?: readonly string[] | undefined;
}

/** A whole document: lang, one h1, the live region for errors, the stylesheet and nothing inline. */
export function renderPage(shell: PageShell, body: SafeHtml): string {
  const error = shell.error;
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${shell.title}${shell.tenantName ? ` · ${shell.tenantName}` : ''}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="${stylesheet.href}">
</head>
<body${shell.wide && html` class="wide"`}>
<header class="masthead"><p class="tenant">${shell.tenantName ?? 'Rampart'}</p></header>
<main class="card">
<h1>${shell.title}</h1>
<div id="form-error" class="alert" role="alert" aria-live="assertive">${
    error &&
    html`<p>${error.message}</p>${
      error.details &&
      error.details.length > 0 &&
      html`<ul>${error.details.map((d) => html`<li>${d}</li>`)}</ul>`
    }`
  }</div>
${shell.notice && html`<p class="notice" role="status">${shell.notice}</p>`}
${body}
</main>
<footer class="footer"><p>Protected by Rampart</p></footer>
</body>
</html>
`.value;
}

export interface FieldSpec {
  name: string;
  label: string;
  type?: 'text' | 'email' | 'password';
  autocomplete: string;
  value?: string | undefined;
  hint?: HtmlValue;
  /** The id of an element that describes the field further (the policy list). */
  describedBy?: string | undefined;
  inputMode?: 'numeric' | 'text' | undefined;
  maxLength?: number | undefined;
  required?: boolean | undefined;
  invalid?: boolean | undefined;
  autofocus?: boolean | undefined;
}

/** A labelled input: the label's `for` names the input's id; hints are tied by aria-describedby. */
export function field(f: FieldSpec): SafeHtml {
  const id = `f-${f.name}`;
  const hintId = f.hint ? `${id}-hint` : null;
  const describedBy = [hintId, f.describedBy].filter(Boolean).join(' ');
  return html`<div class="field">
<label for="${id}">${f.label}</label>
<input id="${id}" name="${f.name}" type="${f.type ?? 'text'}" autocomplete="${f.autocomplete}"${
    f.value !== undefined && html` value="${f.value}"`
  }${f.required !== false && html` required`}${f.maxLength && html` maxlength="${f.maxLength}"`}${
    f.inputMode && html` inputmode="${f.inputMode}"`
  }${describedBy && html` aria-describedby="${describedBy}"`}${f.invalid && html` aria-invalid="true"`}${
    f.autofocus && html` autofocus`
  }>
${hintId && html`<p id="${hintId}" class="hint">${f.hint}</p>`}
</div>`;
}

export const hidden = (name: string, value: string) =>
  html`<input type="hidden" name="${name}" value="${value}">`;

export const csrfField = (token: string) => hidden('_csrf', token);

export const submit = (label: string, kind: 'primary' | 'secondary' | 'danger' = 'primary') =>
  html`<button type="submit" class="button ${kind}">${label}</button>`;

/** A form that posts back as application/x-www-form-urlencoded (the only body the pages accept). */
export const form = (action: string, content: SafeHtml, className = 'stack') =>
  html`<form method="post" action="${action}" class="${className}">${content}</form>`;

export const POLICY_ID = 'policy-rules';

/** The tenant's password rules, shown before the user submits (and referenced by the input). */
export function policyRules(policy: PasswordPolicy): SafeHtml {
  const classes = [
    policy.requireLower && 'a lowercase letter',
    policy.requireUpper && 'an uppercase letter',
    policy.requireDigit && 'a digit',
    policy.requireSpecial && 'a special character (not a letter or digit)',
  ].filter((c): c is string => typeof c === 'string');
  const rules = [
    `Between ${policy.minLength} and ${policy.maxLength} characters.`,
    ...classes.map((c) => `Include ${c}.`),
    policy.forbidPersonal && 'Must not contain your email address or name.',
    policy.historyCount > 0 && `Must differ from your last ${policy.historyCount} passwords.`,
    'Must not be a common password or one known from a data breach.',
  ].filter((r): r is string => typeof r === 'string');
  return html`<div class="policy" id="${POLICY_ID}"><p>Your new password:</p><ul>${rules.map(
    (r) => html`<li>${r}</li>`,
  )}</ul></div>`;
}

/** The new-password pair every password-setting form uses. */
export const newPasswordFields = (policy: PasswordPolicy, invalid = false) => html`${policyRules(policy)}
${field({ name: 'newPassword', label: 'New password', type: 'password', autocomplete: 'new-password', describedBy: POLICY_ID, maxLength: policy.maxLength, invalid })}
${field({ name: 'confirmPassword', label: 'Repeat the new password', type: 'password', autocomplete: 'new-password', maxLength: policy.maxLength, invalid })}`;
