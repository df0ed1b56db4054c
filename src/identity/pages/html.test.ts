import { describe, expect, it } from 'vitest';
import { escapeHtml, html } from './html.ts';

describe('html template', () => {
  it('escapes every interpolated string, in text and in attributes', () => {
    const evil = `"><script>alert('x')</script>&\``;
    const out = html`<input value="${evil}"><p>${evil}</p>`.value;
    expect(out).not.toContain('<script>');
    expect(out).toBe(
      '<input value="&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&#96;"><p>&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&#96;</p>',
    );
  });

  it('nests templates without escaping twice, joins arrays, and renders false/null/undefined as nothing', () => {
    const items = ['a<b', 'c'];
    const out = html`<ul>${items.map((i) => html`<li>${i}</li>`)}</ul>${false}${null}${undefined}${0}`;
    expect(out.value).toBe('<ul><li>a&lt;b</li><li>c</li></ul>0');
  });

  it('escapes the characters that end an attribute or start markup', () => {
    expect(escapeHtml(`&<>"'\``)).toBe('&amp;&lt;&gt;&quot;&#39;&#96;');
  });
});
