// Chat page of the LINE emulator: a person plays a LINE user talking to the bot.
//
// Safety rule: every string that comes from the bot or from a user is put on the page with
// textContent or DOM properties, never parsed as HTML (no innerHTML anywhere in this file),
// and only http(s)/tel URLs ever reach an href or src.
'use strict';

const POLL_MS = 700;
const STICKERS = [
  { packageId: '446', stickerId: '1988', label: 'OK' },
  { packageId: '446', stickerId: '1989', label: 'ありがとう' },
  { packageId: '446', stickerId: '1990', label: 'よろしく' },
  { packageId: '789', stickerId: '10855', label: 'おやすみ' },
];
const VIA_LABELS = {
  reply: 'reply', push: 'push', multicast: 'multicast', broadcast: 'broadcast', narrowcast: 'narrowcast',
};
const FLEX_SIZES = ['xxs', 'xs', 'sm', 'md', 'lg', 'xl', 'xxl', '3xl', '4xl', '5xl'];

const state = {
  users: [],
  current: null, // user id
  after: 0, // last timeline seq shown
  quickReply: null,
  typingTimer: null,
  richMenuId: null,
  pollTimer: null,
  pickerAction: null,
};

const $ = (id) => document.getElementById(id);

// --- small DOM helpers ----------------------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function safeUrl(value, { allowTel = false } = {}) {
  if (typeof value !== 'string') return null;
  let url;
  try {
    url = new URL(value, document.baseURI);
  } catch (e) {
    return null;
  }
  if (url.protocol === 'https:' || url.protocol === 'http:') return url.href;
  if (allowTel && url.protocol === 'tel:') return url.href;
  return null;
}

function safeColor(value) {
  return typeof value === 'string' && /^#[0-9a-fA-F]{6}([0-9a-fA-F]{2})?$/.test(value) ? value : null;
}

function image(url, alt, className) {
  const src = safeUrl(url);
  if (!src) return el('div', `${className || ''} image-missing`, alt || '画像');
  const img = el('img', className);
  img.alt = alt || '';
  img.loading = 'lazy';
  img.addEventListener('error', () => {
    img.replaceWith(el('div', `${className || ''} image-missing`, alt || '画像（読み込めません）'));
  });
  img.src = src;
  return img;
}

// --- server calls ---------------------------------------------------------------------------

async function api(path, body) {
  const options = body === undefined
    ? { headers: { Accept: 'application/json' } }
    : { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) };
  const response = await fetch(`api/${path}`, options);
  let data = null;
  try {
    data = await response.json();
  } catch (e) {
    data = null;
  }
  if (!response.ok) {
    const message = (data && data.error) || `HTTP ${response.status}`;
    throw new Error(message);
  }
  return data;
}

async function act(path, body) {
  // Sends something the user does. A failed webhook is also recorded on the timeline by the
  // server, so the next poll shows it; errors of the page's own API are shown here.
  if (!state.current) return null;
  try {
    const result = await api(`users/${encodeURIComponent(state.current)}/${path}`, body || {});
    await poll();
    return result;
  } catch (e) {
    showLocalError(e.message);
    return null;
  }
}

function showLocalError(text) {
  const box = $('messages');
  box.appendChild(el('p', 'line-system error', text));
  scrollDown();
}

// --- users ----------------------------------------------------------------------------------

async function loadUsers() {
  const data = await api('users');
  state.users = data.users;
  renderUsers();
  renderHeader();
}

function statusOf(user) {
  if (user.blocked) return { text: 'ブロック中', cls: 'blocked' };
  if (user.followed) return { text: '友だち', cls: 'friend' };
  return { text: '未追加', cls: 'stranger' };
}

function renderUsers() {
  const list = $('user-list');
  list.replaceChildren();
  for (const user of state.users) {
    const item = el('li', user.user_id === state.current ? 'user selected' : 'user');
    const button = el('button', 'user-button');
    button.type = 'button';
    button.appendChild(el('span', 'avatar', (user.display_name || '?').slice(0, 1)));
    const names = el('span', 'names');
    names.appendChild(el('span', 'name', user.display_name));
    const status = statusOf(user);
    names.appendChild(el('span', `status ${status.cls}`, status.text));
    button.appendChild(names);
    button.addEventListener('click', () => selectUser(user.user_id));
    item.appendChild(button);
    list.appendChild(item);
  }
}

function currentUser() {
  return state.users.find((u) => u.user_id === state.current) || null;
}

function renderHeader() {
  const user = currentUser();
  const title = $('chat-title');
  const status = $('chat-status');
  if (!user) {
    title.textContent = 'お客さまを選んでください';
    status.textContent = '';
    status.className = 'status';
    for (const id of ['follow-button', 'unfollow-button', 'text-input', 'send-button', 'sticker-button', 'location-button', 'image-button']) {
      $(id).disabled = true;
    }
    return;
  }
  title.textContent = user.display_name;
  const s = statusOf(user);
  status.textContent = s.text;
  status.className = `status ${s.cls}`;
  const follow = $('follow-button');
  follow.textContent = user.blocked ? 'ブロック解除' : '友だち追加';
  follow.disabled = user.followed;
  $('unfollow-button').disabled = !user.followed;
  for (const id of ['text-input', 'send-button', 'sticker-button', 'location-button', 'image-button']) {
    $(id).disabled = !user.followed;
  }
  $('text-input').placeholder = user.followed ? 'メッセージを入力' : '友だち追加するとメッセージを送れます';
}

async function selectUser(userId) {
  state.current = userId;
  state.after = 0;
  state.quickReply = null;
  state.richMenuId = null;
  const box = $('messages');
  box.replaceChildren();
  renderUsers();
  renderHeader();
  renderQuickReply();
  $('richmenu').hidden = true;
  await poll();
  await loadRichMenu();
}

// --- timeline -------------------------------------------------------------------------------

async function poll() {
  const userId = state.current;
  if (!userId) return;
  const data = await api(`users/${encodeURIComponent(userId)}/timeline?after=${state.after}`);
  if (userId !== state.current) return; // switched user meanwhile
  const known = currentUser();
  if (known && (known.followed !== data.user.followed || known.blocked !== data.user.blocked)) {
    Object.assign(known, data.user);
    renderUsers();
    renderHeader();
  }
  if (!data.items.length) return;
  const box = $('messages');
  const empty = box.querySelector('.empty');
  if (empty) empty.remove();
  for (const item of data.items) {
    if (item.seq <= state.after) continue;
    state.after = item.seq;
    renderItem(item);
  }
  renderQuickReply();
  scrollDown();
}

function scrollDown() {
  const box = $('messages');
  box.scrollTop = box.scrollHeight;
}

function timeLabel(seconds) {
  const d = new Date(seconds * 1000);
  return d.toLocaleTimeString('ja-JP', { hour: '2-digit', minute: '2-digit' });
}

function renderItem(item) {
  const box = $('messages');
  if (item.side === 'bot' && item.kind === 'message') {
    stopTyping();
    box.appendChild(botLine(item));
    if (item.message && item.message.quickReply && Array.isArray(item.message.quickReply.items)) {
      state.quickReply = item.message.quickReply.items;
    }
    return;
  }
  if (item.side === 'user') {
    state.quickReply = null;
    const line = userLine(item);
    if (line) box.appendChild(line);
    return;
  }
  if (item.kind === 'loading') {
    startTyping(item.seconds || 20);
    return;
  }
  const cls = item.kind === 'error' ? 'line-system error' : item.kind === 'read' ? 'line-system read' : 'line-system';
  box.appendChild(el('p', cls, item.text));
}

function userLine(item) {
  const event = item.event || {};
  const type = event.type;
  if (type === 'follow') {
    return el('p', 'line-system', event.follow && event.follow.isUnblocked ? 'ブロックを解除しました' : '友だち追加しました');
  }
  if (type === 'unfollow') return el('p', 'line-system', 'ブロックしました');
  let content = null;
  if (type === 'message') {
    content = userMessage(event.message || {});
  } else if (type === 'postback') {
    if (item.displayText) {
      content = el('div', 'bubble user-bubble', item.displayText);
    } else {
      const params = event.postback && event.postback.params ? ` ${JSON.stringify(event.postback.params)}` : '';
      return el('p', 'line-system', `ポストバック送信: ${event.postback ? event.postback.data : ''}${params}`);
    }
  } else {
    return el('p', 'line-system', `イベント送信: ${type}`);
  }
  const line = el('div', 'line user-line');
  line.appendChild(el('span', 'time', timeLabel(item.at)));
  line.appendChild(content);
  return line;
}

function userMessage(message) {
  switch (message.type) {
    case 'text':
      return el('div', 'bubble user-bubble', message.text);
    case 'sticker':
      return stickerBox(message.packageId, message.stickerId);
    case 'image':
      return el('div', 'bubble user-bubble media', '📷 画像を送信しました');
    case 'location':
      return locationCard(message);
    default:
      return el('div', 'bubble user-bubble', `[${message.type}]`);
  }
}

function botLine(item) {
  const line = el('div', item.delivered ? 'line bot-line' : 'line bot-line undelivered');
  line.appendChild(el('span', 'avatar bot-avatar', 'B'));
  const column = el('div', 'bot-column');
  const meta = el('div', 'meta');
  meta.appendChild(el('span', `via via-${item.via}`, VIA_LABELS[item.via] || item.via));
  if (!item.delivered) meta.appendChild(el('span', 'via undelivered-tag', '未配信'));
  meta.appendChild(el('span', 'time', timeLabel(item.at)));
  column.appendChild(renderBotMessage(item.message || {}));
  column.appendChild(meta);
  line.appendChild(column);
  return line;
}

function renderBotMessage(message) {
  switch (message.type) {
    case 'text':
    case 'textV2':
      return el('div', 'bubble bot-bubble', message.text);
    case 'sticker':
      return stickerBox(message.packageId, message.stickerId);
    case 'image': {
      const box = el('div', 'bubble bot-bubble media');
      box.appendChild(image(message.previewImageUrl || message.originalContentUrl, '画像', 'message-image'));
      return box;
    }
    case 'video':
      return mediaLink('🎬 動画', message.originalContentUrl);
    case 'audio':
      return mediaLink('🎵 音声', message.originalContentUrl);
    case 'location':
      return locationCard(message);
    case 'imagemap':
      return imagemapCard(message);
    case 'template':
      return templateCard(message.template || {}, message.altText);
    case 'flex':
      return flexMessage(message.contents || {}, message.altText);
    default:
      return el('div', 'bubble bot-bubble', `[${message.type} メッセージ]`);
  }
}

function stickerBox(packageId, stickerId) {
  const box = el('div', 'sticker');
  box.appendChild(el('span', 'sticker-face', '🐻'));
  box.appendChild(el('span', 'sticker-id', `スタンプ ${packageId}/${stickerId}`));
  return box;
}

function mediaLink(label, url) {
  const box = el('div', 'bubble bot-bubble');
  const href = safeUrl(url);
  if (href) {
    const a = el('a', null, label);
    a.href = href;
    a.target = '_blank';
    a.rel = 'noopener noreferrer';
    box.appendChild(a);
  } else {
    box.textContent = label;
  }
  return box;
}

function locationCard(message) {
  const card = el('div', 'card location');
  card.appendChild(el('div', 'card-title', `📍 ${message.title || '位置情報'}`));
  if (message.address) card.appendChild(el('div', 'card-text', message.address));
  card.appendChild(el('div', 'card-sub', `${message.latitude}, ${message.longitude}`));
  return card;
}

function imagemapCard(message) {
  const card = el('div', 'card');
  card.appendChild(image(`${message.baseUrl}/700`, message.altText, 'card-image'));
  card.appendChild(el('div', 'card-text', message.altText));
  for (const action of message.actions || []) {
    const mapped = action.type === 'uri'
      ? { type: 'uri', uri: action.linkUri, label: action.label || action.linkUri }
      : { ...action, label: action.label || action.text || action.type };
    card.appendChild(actionButton(mapped, 'card-button'));
  }
  return card;
}

// --- templates ------------------------------------------------------------------------------

function templateCard(template, altText) {
  switch (template.type) {
    case 'buttons': {
      const card = el('div', 'card');
      if (template.thumbnailImageUrl) card.appendChild(image(template.thumbnailImageUrl, template.title, 'card-image'));
      if (template.title) card.appendChild(el('div', 'card-title', template.title));
      card.appendChild(el('div', 'card-text', template.text));
      for (const action of template.actions || []) card.appendChild(actionButton(action, 'card-button'));
      return card;
    }
    case 'confirm': {
      const card = el('div', 'card');
      card.appendChild(el('div', 'card-text', template.text));
      const row = el('div', 'card-row');
      for (const action of template.actions || []) row.appendChild(actionButton(action, 'card-button'));
      card.appendChild(row);
      return card;
    }
    case 'carousel': {
      const strip = el('div', 'carousel');
      for (const column of template.columns || []) {
        const card = el('div', 'card');
        if (column.thumbnailImageUrl) card.appendChild(image(column.thumbnailImageUrl, column.title, 'card-image'));
        if (column.title) card.appendChild(el('div', 'card-title', column.title));
        card.appendChild(el('div', 'card-text', column.text));
        for (const action of column.actions || []) card.appendChild(actionButton(action, 'card-button'));
        strip.appendChild(card);
      }
      return strip;
    }
    case 'image_carousel': {
      const strip = el('div', 'carousel');
      for (const column of template.columns || []) {
        const card = el('div', 'card');
        card.appendChild(image(column.imageUrl, '', 'card-image'));
        if (column.action) card.appendChild(actionButton(column.action, 'card-button'));
        strip.appendChild(card);
      }
      return strip;
    }
    default:
      return el('div', 'bubble bot-bubble', altText || '[テンプレート]');
  }
}

// --- flex -----------------------------------------------------------------------------------

function flexMessage(contents, altText) {
  if (contents.type === 'carousel') {
    const strip = el('div', 'carousel');
    for (const bubble of contents.contents || []) strip.appendChild(flexBubble(bubble));
    return strip;
  }
  if (contents.type === 'bubble') return flexBubble(contents);
  return el('div', 'bubble bot-bubble', altText || '[Flex]');
}

function flexBubble(bubble) {
  const node = el('div', `flex-bubble size-${bubble.size || 'mega'}`);
  const styles = bubble.styles || {};
  for (const block of ['header', 'hero', 'body', 'footer']) {
    const part = bubble[block];
    if (!part) continue;
    const wrap = el('div', `flex-block flex-${block}`);
    const bg = safeColor((styles[block] || {}).backgroundColor);
    if (bg) wrap.style.backgroundColor = bg;
    if (styles[block] && styles[block].separator) wrap.classList.add('flex-separated');
    wrap.appendChild(flexComponent(part, 'vertical'));
    node.appendChild(wrap);
  }
  if (bubble.action) makeClickable(node, bubble.action);
  return node;
}

function spacing(value) {
  const named = { none: '0', xs: '2px', sm: '4px', md: '8px', lg: '12px', xl: '16px', xxl: '20px' };
  if (typeof value !== 'string') return null;
  if (named[value] !== undefined) return named[value];
  return /^\d+(\.\d+)?(px|%)$/.test(value) ? value : null;
}

function applyCommon(node, c, parentLayout) {
  // LINE's defaults: children of a horizontal or baseline box share the width (flex 1), in a
  // vertical box they keep their natural height (flex 0).
  const defaultFlex = parentLayout === 'vertical' ? 0 : 1;
  const flex = Number.isInteger(c.flex) ? c.flex : defaultFlex;
  node.style.flex = flex > 0 ? `${flex} 1 0` : '0 0 auto';
  const margin = spacing(c.margin);
  if (margin) node.style[parentLayout === 'vertical' ? 'marginTop' : 'marginLeft'] = margin;
  if (c.position === 'absolute') node.classList.add('flex-absolute');
}

function flexComponent(c, parentLayout) {
  if (!c || typeof c !== 'object') return el('span');
  let node;
  switch (c.type) {
    case 'box': {
      node = el('div', `flex-box layout-${['horizontal', 'vertical', 'baseline'].includes(c.layout) ? c.layout : 'vertical'}`);
      const gap = spacing(c.spacing);
      if (gap) node.style.gap = gap;
      const pad = spacing(c.paddingAll);
      if (pad) node.style.padding = pad;
      for (const side of ['Top', 'Bottom', 'Start', 'End']) {
        const v = spacing(c[`padding${side}`]);
        if (v) node.style[`padding${side === 'Start' ? 'Left' : side === 'End' ? 'Right' : side}`] = v;
      }
      const bg = safeColor(c.backgroundColor);
      if (bg) node.style.backgroundColor = bg;
      const border = safeColor(c.borderColor);
      if (border) node.style.border = `1px solid ${border}`;
      if (spacing(c.cornerRadius)) node.style.borderRadius = spacing(c.cornerRadius);
      for (const child of c.contents || []) node.appendChild(flexComponent(child, c.layout));
      break;
    }
    case 'text': {
      node = el('div', 'flex-text');
      if (Array.isArray(c.contents) && c.contents.length) {
        for (const span of c.contents) {
          const s = el('span', 'flex-span', span.text);
          styleText(s, span);
          node.appendChild(s);
        }
      } else {
        node.textContent = c.text == null ? '' : String(c.text);
      }
      styleText(node, c);
      if (c.wrap) node.classList.add('wrap');
      if (['start', 'end', 'center'].includes(c.align)) node.style.textAlign = c.align === 'start' ? 'left' : c.align === 'end' ? 'right' : 'center';
      if (c.action) makeClickable(node, c.action);
      break;
    }
    case 'span':
      node = el('span', 'flex-span', c.text);
      styleText(node, c);
      break;
    case 'button': {
      node = actionButton(c.action || {}, `flex-button style-${['primary', 'secondary', 'link'].includes(c.style) ? c.style : 'link'}`);
      const color = safeColor(c.color);
      if (color) {
        if (c.style === 'primary' || c.style === 'secondary') node.style.backgroundColor = color;
        else node.style.color = color;
      }
      if (c.height === 'sm') node.classList.add('small');
      break;
    }
    case 'image': {
      node = el('div', `flex-image size-${typeof c.size === 'string' ? c.size.replace(/[^a-z0-9]/g, '') : 'md'}`);
      const img = image(c.url, '', 'flex-img');
      if (c.aspectMode === 'cover') img.classList.add('cover');
      node.appendChild(img);
      const bg = safeColor(c.backgroundColor);
      if (bg) node.style.backgroundColor = bg;
      if (c.action) makeClickable(node, c.action);
      break;
    }
    case 'icon':
      node = image(c.url, '', 'flex-icon');
      break;
    case 'separator': {
      node = el('hr', 'flex-separator');
      const color = safeColor(c.color);
      if (color) node.style.borderColor = color;
      break;
    }
    case 'filler':
      node = el('div', 'flex-filler');
      break;
    case 'video':
      node = el('div', 'flex-video');
      node.appendChild(image(c.previewUrl, '動画', 'flex-img'));
      node.appendChild(el('span', 'flex-video-label', '▶ 動画'));
      break;
    default:
      node = el('div', 'flex-unknown', `[${c.type}]`);
  }
  if (c.type !== 'span') applyCommon(node, c, parentLayout);
  return node;
}

function styleText(node, c) {
  if (FLEX_SIZES.includes(c.size)) node.classList.add(`fs-${c.size}`);
  if (c.weight === 'bold') node.style.fontWeight = 'bold';
  if (c.style === 'italic') node.style.fontStyle = 'italic';
  if (c.decoration === 'line-through' || c.decoration === 'underline') node.style.textDecoration = c.decoration;
  const color = safeColor(c.color);
  if (color) node.style.color = color;
}

// --- actions --------------------------------------------------------------------------------

function actionLabel(action) {
  return action.label || action.displayText || action.text || action.data || action.uri || action.type || '?';
}

function actionButton(action, className) {
  const button = el('button', className, actionLabel(action));
  button.type = 'button';
  button.addEventListener('click', (e) => {
    e.stopPropagation();
    doAction(action);
  });
  return button;
}

function makeClickable(node, action) {
  node.classList.add('clickable');
  node.tabIndex = 0;
  node.addEventListener('click', (e) => {
    e.stopPropagation();
    doAction(action);
  });
}

async function doAction(action) {
  if (!action || !state.current) return;
  switch (action.type) {
    case 'message':
      await act('text', { text: action.text || action.label || '' });
      break;
    case 'postback':
      await act('postback', { data: action.data || '', displayText: action.displayText || action.text || null });
      break;
    case 'datetimepicker':
      openPicker(action);
      break;
    case 'uri': {
      // Counted as a click for LINE's insight (the latest message with this link); best effort.
      api(`users/${encodeURIComponent(state.current)}/click`, { url: action.uri }).catch(() => {});
      const href = safeUrl(action.uri, { allowTel: true });
      if (href) window.open(href, '_blank', 'noopener');
      else showLocalError(`このリンクはエミュレーターでは開けません: ${action.uri}`);
      break;
    }
    case 'camera':
    case 'cameraRoll':
      await act('image', {});
      break;
    case 'location':
      togglePanel('location-panel');
      break;
    case 'clipboard':
      try {
        await navigator.clipboard.writeText(action.clipboardText || '');
      } catch (e) { /* clipboard may be unavailable in headless browsers */ }
      showLocalError(`コピーしました: ${action.clipboardText || ''}`);
      break;
    case 'richmenuswitch':
      await act('postback', {
        data: action.data || '',
        params: { newRichMenuAliasId: action.richMenuAliasId, status: 'SUCCESS' },
      });
      break;
    default:
      showLocalError(`未対応のアクション: ${action.type}`);
  }
}

function openPicker(action) {
  const input = $('picker-input');
  const mode = action.mode === 'time' ? 'time' : action.mode === 'datetime' ? 'datetime-local' : 'date';
  input.type = mode;
  input.value = '';
  for (const key of ['min', 'max']) {
    if (typeof action[key] === 'string') input.setAttribute(key, action[key]);
    else input.removeAttribute(key);
  }
  if (typeof action.initial === 'string') input.value = action.initial;
  $('picker-title').textContent = action.label ? `${action.label}` : '日時を選択';
  state.pickerAction = action;
  showPanel('picker-panel');
  input.focus();
}

// --- quick replies, typing indicator, rich menu ---------------------------------------------

function renderQuickReply() {
  const bar = $('quick-replies');
  bar.replaceChildren();
  const items = state.quickReply;
  if (!items || !items.length) {
    bar.hidden = true;
    return;
  }
  for (const item of items) {
    const action = item.action || {};
    const button = actionButton(action, 'quick-reply');
    if (item.imageUrl) button.prepend(image(item.imageUrl, '', 'quick-reply-icon'));
    bar.appendChild(button);
  }
  bar.hidden = false;
}

function startTyping(seconds) {
  stopTyping();
  const dots = el('div', 'line bot-line typing');
  dots.id = 'typing';
  dots.appendChild(el('span', 'avatar bot-avatar', 'B'));
  dots.appendChild(el('div', 'bubble bot-bubble', '入力中…'));
  $('messages').appendChild(dots);
  state.typingTimer = setTimeout(stopTyping, seconds * 1000);
}

function stopTyping() {
  clearTimeout(state.typingTimer);
  const dots = $('typing');
  if (dots) dots.remove();
}

async function loadRichMenu() {
  if (!state.current) return;
  const data = await api(`users/${encodeURIComponent(state.current)}/richmenu`);
  const menu = data.richmenu;
  const box = $('richmenu');
  if (!menu) {
    box.hidden = true;
    state.richMenuId = null;
    return;
  }
  if (menu.richMenuId === state.richMenuId) return;
  state.richMenuId = menu.richMenuId;
  $('richmenu-toggle').textContent = `${menu.chatBarText || 'メニュー'} ▾`;
  const body = $('richmenu-body');
  body.replaceChildren();
  const frame = el('div', 'richmenu-frame');
  frame.style.aspectRatio = `${menu.size.width} / ${menu.size.height}`;
  const img = el('img', 'richmenu-image');
  img.alt = menu.name || 'リッチメニュー';
  img.src = `api/richmenus/${encodeURIComponent(menu.richMenuId)}/image`;
  frame.appendChild(img);
  for (const area of menu.areas || []) {
    const b = area.bounds || {};
    const button = actionButton(area.action || {}, 'richmenu-area');
    button.title = actionLabel(area.action || {});
    button.textContent = '';
    button.style.left = `${(100 * b.x) / menu.size.width}%`;
    button.style.top = `${(100 * b.y) / menu.size.height}%`;
    button.style.width = `${(100 * b.width) / menu.size.width}%`;
    button.style.height = `${(100 * b.height) / menu.size.height}%`;
    frame.appendChild(button);
  }
  body.appendChild(frame);
  body.hidden = !menu.selected;
  box.hidden = false;
}

// --- panels ---------------------------------------------------------------------------------

function showPanel(id) {
  for (const panel of ['sticker-panel', 'location-panel', 'picker-panel']) $(panel).hidden = panel !== id;
}

function togglePanel(id) {
  if ($(id).hidden) showPanel(id);
  else $(id).hidden = true;
}

function setupPanels() {
  const grid = $('sticker-grid');
  for (const sticker of STICKERS) {
    const button = el('button', 'sticker-choice');
    button.type = 'button';
    button.appendChild(el('span', 'sticker-face', '🐻'));
    button.appendChild(el('span', 'sticker-id', `${sticker.label} (${sticker.packageId}/${sticker.stickerId})`));
    button.addEventListener('click', async () => {
      $('sticker-panel').hidden = true;
      await act('sticker', { package_id: sticker.packageId, sticker_id: sticker.stickerId });
    });
    grid.appendChild(button);
  }
  for (const closer of document.querySelectorAll('[data-close]')) {
    closer.addEventListener('click', () => { $(closer.dataset.close).hidden = true; });
  }
  $('sticker-button').addEventListener('click', () => togglePanel('sticker-panel'));
  $('location-button').addEventListener('click', () => togglePanel('location-panel'));
  $('image-button').addEventListener('click', () => act('image', {}));
  $('location-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const form = new FormData(e.target);
    $('location-panel').hidden = true;
    await act('location', {
      title: form.get('title'), address: form.get('address'),
      latitude: Number(form.get('latitude')), longitude: Number(form.get('longitude')),
    });
  });
  $('picker-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const action = state.pickerAction;
    const value = $('picker-input').value;
    if (!action || !value) return;
    $('picker-panel').hidden = true;
    // LINE's params keys follow the picker mode: date, time or datetime.
    const key = action.mode === 'time' ? 'time' : action.mode === 'datetime' ? 'datetime' : 'date';
    await act('postback', { data: action.data || '', params: { [key]: value } });
  });
  $('richmenu-toggle').addEventListener('click', () => {
    $('richmenu-body').hidden = !$('richmenu-body').hidden;
  });
}

// --- start ----------------------------------------------------------------------------------

async function start() {
  setupPanels();
  try {
    const info = await api('info');
    $('bot-name').textContent = `ボット: ${info.bot.displayName}`;
  } catch (e) {
    showLocalError(`エミュレーターに接続できません: ${e.message}`);
  }
  await loadUsers();

  $('new-user-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const input = $('new-user-name');
    const name = input.value.trim();
    if (!name) return;
    try {
      const user = await api('users', { display_name: name });
      input.value = '';
      await loadUsers();
      await selectUser(user.user_id);
      await act('follow', {});
      await loadUsers();
    } catch (err) {
      showLocalError(err.message);
    }
  });
  $('follow-button').addEventListener('click', async () => {
    await act('follow', {});
    await loadUsers();
  });
  $('unfollow-button').addEventListener('click', async () => {
    await act('unfollow', {});
    await loadUsers();
  });
  $('composer').addEventListener('submit', async (e) => {
    e.preventDefault();
    const input = $('text-input');
    const text = input.value;
    if (!text.trim()) return;
    input.value = '';
    await act('text', { text });
  });

  let ticks = 0;
  const loop = async () => {
    try {
      await poll();
      ticks += 1;
      if (ticks % 5 === 0) {
        await loadUsers();
        await loadRichMenu();
      }
    } catch (e) {
      // The emulator may be restarting; keep polling.
    }
    state.pollTimer = setTimeout(loop, POLL_MS);
  };
  state.pollTimer = setTimeout(loop, POLL_MS);
}

start();
