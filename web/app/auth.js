// People sign in with Firebase Authentication (Google, or a link sent by email); under `make run` against the Auth
// emulator. The API is called with the person's ID token, which the SDK refreshes before it expires.
import { initializeApp } from '/vendor/firebase-13.2.0/firebase-app.js';
import {
  GoogleAuthProvider, connectAuthEmulator, getAuth, isSignInWithEmailLink, onIdTokenChanged,
  sendSignInLinkToEmail, signInWithCredential, signInWithEmailLink, signInWithPopup, signOut as fbSignOut,
} from '/vendor/firebase-13.2.0/firebase-auth.js';

const EMAIL_KEY = 'qorch.emailForSignIn';
let auth = null;
let ready = null;
let emulated = false;

export function init(config) {
  const app = initializeApp(config.firebase);
  auth = getAuth(app);
  if (config.auth_emulator) {
    // The SDK's own banner would cover the page's footer; the header shows "Auth emulator" instead.
    connectAuthEmulator(auth, config.auth_emulator, { disableWarnings: true });
    emulated = true;
  }
  ready = new Promise((resolve) => {
    const stop = onIdTokenChanged(auth, (user) => { stop(); resolve(user); });
  });
  return ready;
}

export const user = () => (auth ? auth.currentUser : null);

export async function idToken() {
  const u = user();
  return u ? u.getIdToken() : null;
}

export function onChange(fn) {
  return onIdTokenChanged(auth, fn);
}

export const isEmulated = () => emulated;

// Google, in a popup. Under the Auth emulator there is no Google to talk to (and the popup needs Google's script,
// which an offline machine cannot load): the emulator takes a Google credential it does not verify instead, the
// way its own fake account chooser does. `email` is the Google account to be, then.
export async function google(email) {
  const provider = new GoogleAuthProvider();
  if (emulated) {
    const claims = { sub: `google-${email.toLowerCase()}`, email, email_verified: true };
    return signInWithCredential(auth, GoogleAuthProvider.credential(JSON.stringify(claims)));
  }
  provider.setCustomParameters({ prompt: 'select_account' });
  return signInWithPopup(auth, provider);
}

export async function sendLink(email, next) {
  const url = new URL('/signin', window.location.origin);
  if (next) url.searchParams.set('next', next);
  await sendSignInLinkToEmail(auth, email, { url: url.href, handleCodeInApp: true });
  window.localStorage.setItem(EMAIL_KEY, email);
}

export const isLink = (href) => isSignInWithEmailLink(auth, href);
export const rememberedEmail = () => window.localStorage.getItem(EMAIL_KEY);

export async function finishLink(email, href) {
  const result = await signInWithEmailLink(auth, email, href);
  window.localStorage.removeItem(EMAIL_KEY);
  return result;
}

export const signOut = () => fbSignOut(auth);
