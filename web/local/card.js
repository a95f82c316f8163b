// The local stack's card form: pays through the Stripe stand-in as Stripe.js does (API.md,
// "Local stack"): POST /v1/payment_methods, then POST /v1/payment_intents/{id}/confirm with
// the publishable key and the client_secret. Served by the local gateway only, at
// /app/local/; never part of what is deployed (raw card numbers must not touch our pages).

const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) node.setAttribute(k, v);
  node.append(...children);
  return node;
};

async function stripePost(base, path, fields, key) {
  const response = await fetch(`${base}${path}`, { method: 'POST', body: new URLSearchParams({ ...fields, key }) });
  const body = await response.json();
  if (body.error) throw new Error(body.error.message || 'The card was declined.');
  return body;
}

export function mount(box, { stripeApi, publishableKey, order }) {
  const button = el('button', { type: 'submit' }, 'Pay');
  const form = el('form', { id: 'card-form', autocomplete: 'on' },
    el('p', { class: 'muted' }, 'Local test payment through the Stripe stand-in (try 4242 4242 4242 4242).'),
    el('label', { for: 'card-number' }, 'Card number'),
    el('input', { id: 'card-number', inputmode: 'numeric', autocomplete: 'cc-number', required: '' }),
    el('div', { class: 'row' },
      el('div', {}, el('label', { for: 'card-exp' }, 'Expiry (MM/YY)'),
        el('input', { id: 'card-exp', autocomplete: 'cc-exp', placeholder: 'MM/YY', required: '' })),
      el('div', {}, el('label', { for: 'card-cvc' }, 'CVC'),
        el('input', { id: 'card-cvc', inputmode: 'numeric', autocomplete: 'cc-csc', required: '' }))),
    el('p', {}, button));
  box.replaceChildren(form);
  return new Promise((resolve) => {
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      button.disabled = true;
      const status = document.getElementById('status');
      try {
        const [month, year] = form.querySelector('#card-exp').value.split('/').map((s) => s.trim());
        const method = await stripePost(stripeApi, '/v1/payment_methods', {
          type: 'card', 'card[number]': form.querySelector('#card-number').value.replace(/\s+/g, ''),
          'card[exp_month]': month, 'card[exp_year]': year.length === 2 ? `20${year}` : year,
          'card[cvc]': form.querySelector('#card-cvc').value.trim(),
        }, publishableKey);
        const intent = await stripePost(stripeApi, `/v1/payment_intents/${order.payment_intent_id}/confirm`,
          { payment_method: method.id, client_secret: order.client_secret }, publishableKey);
        if (intent.status !== 'succeeded') throw new Error(`The payment is ${intent.status.replace(/_/g, ' ')}.`);
        resolve(intent);
      } catch (error) {
        if (status) { status.hidden = false; status.className = 'status error'; status.textContent = error.message; }
        button.disabled = false;
      }
    });
  });
}
