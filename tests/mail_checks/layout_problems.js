// What a customer would see go wrong in a rendered mail (tests/test_mail_layouts_browser.py): a list of problems.
() => {
  const problems = [];
  const vw = window.innerWidth;
  const doc = document.documentElement;
  if (doc.scrollWidth > vw) problems.push(`document ${doc.scrollWidth}px wide in a ${vw}px viewport`);
  const blockOf = (el) => {
    let p = el.parentElement;
    while (p && getComputedStyle(p).display.startsWith('inline') && p !== document.body) p = p.parentElement;
    return p;
  };
  const name = (el) => el.tagName.toLowerCase() + (el.className ? '.' + el.className : '') +
      (el.textContent ? ` "${el.textContent.trim().slice(0, 40)}"` : '');
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    const parent = blockOf(el);
    if (!parent || parent === document.body) continue;
    const pr = parent.getBoundingClientRect();
    if (pr.width === 0) continue;
    if (r.left < pr.left - 1 || r.right > pr.right + 1)
      problems.push(`${name(el)} [${Math.round(r.left)}..${Math.round(r.right)}] outside ${name(parent).slice(0, 30)} [${Math.round(pr.left)}..${Math.round(pr.right)}]`);
    if (r.right > vw + 0.5) problems.push(`${name(el)} ends at ${Math.round(r.right)}px, past the screen`);
  }
  for (const img of document.images) {
    if (!img.hasAttribute('width') || !img.hasAttribute('height'))
      problems.push(`image ${img.src} without width and height`);
    if (!img.complete || img.naturalWidth === 0) problems.push(`image ${img.src} did not load`);
  }
  const buttons = [...document.querySelectorAll('td[bgcolor] > a')];
  for (const a of buttons) {
    const r = a.getBoundingClientRect();
    if (r.left < 0 || r.right > vw || r.width === 0) problems.push(`button "${a.textContent.trim()}" not fully visible`);
    if (a.scrollWidth > a.clientWidth + 1) problems.push(`button "${a.textContent.trim()}" clipped`);
  }
  return problems;
}
